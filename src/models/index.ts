/** Importing this module registers every built-in model. */
import './softmax.js';

export { create, getEntry, list, register, type ModelEntry, type ModelSpec } from './registry.js';
