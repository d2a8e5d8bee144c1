// Public face of src/controller.
export { Controller, type ControllerOptions } from './controller.js';
