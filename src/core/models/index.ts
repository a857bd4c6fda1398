/** Importing this module registers every built-in model. */
import './softmax.js';
import './softmax-scratch.js';
import './mlp.js';
import './lenet.js';
import './cnn.js';
import './knn.js';

export {
  create,
  getEntry,
  list,
  loadNet,
  register,
  type ModelDefaults,
  type ModelEntry,
  type ModelSpec,
} from './registry.js';
export { layersNet, type Net, type NetArtifacts } from './net.js';
