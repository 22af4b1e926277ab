// The page's byte formatter: the engine's one formatter, the same words as the CLI and the worker's messages.
export { formatBytes } from '../engine/bytes.js';
