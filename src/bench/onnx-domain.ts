// Puts chosen nodes of an encoded ONNX model into another operator domain (com.microsoft contrib ops), rewriting the protobuf.

/** A field of a protobuf message: its number, wire type and the bytes it spans (tag included). */
interface Field {
  field: number;
  wire: number;
  start: number;
  end: number;
  /** Where a length-delimited payload starts. */
  body: number;
}

function varint(b: Uint8Array, at: number): [number, number] {
  let v = 0;
  let mul = 1;
  for (;;) {
    const x = b[at++]!;
    v += (x & 0x7f) * mul;
    if (x < 0x80) return [v, at];
    mul *= 128;
  }
}

function fields(b: Uint8Array): Field[] {
  const out: Field[] = [];
  let at = 0;
  while (at < b.length) {
    const start = at;
    const [tag, p] = varint(b, at);
    const wire = tag & 7;
    let body = p;
    if (wire === 0) at = varint(b, p)[1];
    else if (wire === 1) at = p + 8;
    else if (wire === 5) at = p + 4;
    else if (wire === 2) {
      const [len, q] = varint(b, p);
      body = q;
      at = q + len;
    } else throw new Error(`onnx-domain: wire type ${wire} not expected`);
    out.push({ field: tag >>> 3, wire, start, end: at, body });
  }
  return out;
}

function encodeVarint(v: number): number[] {
  const out: number[] = [];
  while (v >= 0x80) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

function lengthDelimited(field: number, payload: Uint8Array): Uint8Array {
  return Uint8Array.from([...encodeVarint((field << 3) | 2), ...encodeVarint(payload.length), ...payload]);
}

const concat = (parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

/** Rewrite each length-delimited `field` of message `b` with `fn` (other fields copied as they are). */
function mapField(b: Uint8Array, field: number, fn: (payload: Uint8Array) => Uint8Array): Uint8Array {
  return concat(fields(b).map((f) => (f.field === field && f.wire === 2 ? lengthDelimited(field, fn(b.subarray(f.body, f.end))) : b.subarray(f.start, f.end))));
}

/**
 * `model` with every node whose op_type is in `ops` moved to `domain`, and an opset import for that
 * domain. (ModelProto: graph = 7, opset_import = 8; GraphProto: node = 1; NodeProto: op_type = 4,
 * domain = 7; OperatorSetIdProto: domain = 1, version = 2.)
 */
export function withDomain(model: Uint8Array, ops: ReadonlySet<string>, domain = 'com.microsoft', version = 1): Uint8Array {
  const text = new TextDecoder();
  const enc = new TextEncoder();
  const moved = mapField(model, 7, (graph) =>
    mapField(graph, 1, (node) => {
      const op = fields(node).find((f) => f.field === 4 && f.wire === 2);
      return op && ops.has(text.decode(node.subarray(op.body, op.end))) ? concat([node, lengthDelimited(7, enc.encode(domain))]) : node;
    }),
  );
  const opset = concat([lengthDelimited(1, enc.encode(domain)), Uint8Array.from([0x10, ...encodeVarint(version)])]);
  return concat([moved, lengthDelimited(8, opset)]);
}
