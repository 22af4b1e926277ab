// The training worker: exposes the trainer over Comlink and nothing else.
import * as Comlink from 'comlink';
import { createTrainerApi } from '../src/worker/api.js';

Comlink.expose(createTrainerApi());
