// A minimal ONNX ModelProto encoder for tests: enough protobuf (varints, length-delimited fields,
// fixed32 floats) to build small float32 graphs in memory for onnxruntime to run as a reference.
// Field numbers follow onnx/onnx.proto (ModelProto, GraphProto, NodeProto, AttributeProto,
// TensorProto, ValueInfoProto, TypeProto, TensorShapeProto, OperatorSetIdProto).

/** An attribute value: an integer (INT), a float (FLOAT), a string (STRING) or a list of integers (INTS). */
export type OnnxAttr = { i: number } | { f: number } | { s: string } | { ints: readonly number[] };

export interface OnnxNode {
  op: string;
  inputs: readonly string[];
  outputs: readonly string[];
  attrs?: Readonly<Record<string, OnnxAttr>>;
}

/** A float32 graph input or output; a string dimension is symbolic (a dynamic batch, e.g. 'batch'). */
export interface OnnxValue {
  name: string;
  shape: readonly (number | string)[];
}

/** A constant input: float32 (default) or int64 (Reshape shapes, Resize sizes). */
export interface OnnxInitializer {
  name: string;
  shape: readonly number[];
  data: ArrayLike<number>;
  type?: 'float' | 'int64';
}

export interface OnnxGraph {
  nodes: readonly OnnxNode[];
  inputs: readonly OnnxValue[];
  outputs: readonly OnnxValue[];
  initializers?: readonly OnnxInitializer[];
  name?: string;
  /** Default-domain opset; 17 unless given. */
  opset?: number;
  /** IR version; 8 unless given (opset 18 and above need IR 8+, 21 needs 10). */
  irVersion?: number;
}

// TensorProto.DataType and AttributeProto.AttributeType values.
const FLOAT = 1;
const INT64 = 7;
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_STRING = 3;
const ATTR_INTS = 7;

/** Protobuf wire format writer: fields appended in call order. */
class Writer {
  private bytes: number[] = [];

  private varint(v: number | bigint): void {
    // int64 fields carry negative values as 10-byte two's complement varints.
    let x = BigInt.asUintN(64, BigInt(v));
    while (x >= 0x80n) {
      this.bytes.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    this.bytes.push(Number(x));
  }

  private tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  /** Wire type 0: int32, int64, enum. */
  int(field: number, v: number): this {
    this.tag(field, 0);
    this.varint(v);
    return this;
  }

  /** Wire type 5: float. */
  float(field: number, v: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.bytes.push(...b);
    return this;
  }

  /** Wire type 2: bytes, embedded messages, packed repeated scalars. */
  bytesField(field: number, b: Uint8Array): this {
    this.tag(field, 2);
    this.varint(b.length);
    for (const x of b) this.bytes.push(x);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytesField(field, new TextEncoder().encode(s));
  }

  message(field: number, m: Writer): this {
    return this.bytesField(field, m.finish());
  }

  /** Packed repeated int64. */
  packedInts(field: number, vs: readonly number[]): this {
    const inner = new Writer();
    for (const v of vs) inner.varint(v);
    return this.bytesField(field, inner.finish());
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

function attribute(name: string, a: OnnxAttr): Writer {
  // AttributeProto: name = 1, f = 2, i = 3, s = 4, ints = 8, type = 20.
  const w = new Writer().string(1, name);
  if ('f' in a) return w.float(2, a.f).int(20, ATTR_FLOAT);
  if ('i' in a) return w.int(3, a.i).int(20, ATTR_INT);
  if ('s' in a) return w.string(4, a.s).int(20, ATTR_STRING);
  return w.packedInts(8, a.ints).int(20, ATTR_INTS);
}

function node(n: OnnxNode, index: number): Writer {
  // NodeProto: input = 1, output = 2, name = 3, op_type = 4, attribute = 5.
  const w = new Writer();
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, `${n.op}_${index}`).string(4, n.op);
  for (const [k, v] of Object.entries(n.attrs ?? {})) w.message(5, attribute(k, v));
  return w;
}

function initializer(t: OnnxInitializer): Writer {
  // TensorProto: dims = 1, data_type = 2, name = 8, raw_data = 9 (little-endian).
  const n = t.shape.reduce((a, b) => a * b, 1);
  if (t.data.length !== n) throw new Error(`onnx initializer ${t.name}: ${t.data.length} values for shape [${t.shape.join(', ')}]`);
  const int64 = t.type === 'int64';
  const raw = new Uint8Array(n * (int64 ? 8 : 4));
  const dv = new DataView(raw.buffer);
  for (let i = 0; i < n; i++) {
    if (int64) dv.setBigInt64(8 * i, BigInt(t.data[i]!), true);
    else dv.setFloat32(4 * i, t.data[i]!, true);
  }
  return new Writer().packedInts(1, t.shape).int(2, int64 ? INT64 : FLOAT).string(8, t.name).bytesField(9, raw);
}

function valueInfo(v: OnnxValue): Writer {
  // ValueInfoProto: name = 1, type = 2. TypeProto: tensor_type = 1. TypeProto.Tensor: elem_type = 1,
  // shape = 2. TensorShapeProto: dim = 1. Dimension: dim_value = 1, dim_param = 2.
  const shape = new Writer();
  for (const d of v.shape) shape.message(1, typeof d === 'number' ? new Writer().int(1, d) : new Writer().string(2, d));
  const tensorType = new Writer().int(1, FLOAT).message(2, shape);
  return new Writer().string(1, v.name).message(2, new Writer().message(1, tensorType));
}

/** Serialize a ModelProto holding `g`. */
export function onnxModel(g: OnnxGraph): Uint8Array {
  // GraphProto: node = 1, name = 2, initializer = 5, input = 11, output = 12.
  const graph = new Writer();
  g.nodes.forEach((n, i) => graph.message(1, node(n, i)));
  graph.string(2, g.name ?? 'test');
  for (const t of g.initializers ?? []) graph.message(5, initializer(t));
  for (const v of g.inputs) graph.message(11, valueInfo(v));
  for (const v of g.outputs) graph.message(12, valueInfo(v));
  // ModelProto: ir_version = 1, producer_name = 2, graph = 7, opset_import = 8.
  // OperatorSetIdProto: domain = 1, version = 2 (the empty domain is the default ai.onnx).
  return new Writer()
    .int(1, g.irVersion ?? 8)
    .string(2, 'lorasmith-test')
    .message(7, graph)
    .message(8, new Writer().string(1, '').int(2, g.opset ?? 17))
    .finish();
}
