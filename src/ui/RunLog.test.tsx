// The Train panel's run log in Chromium: every line the worker logs through the run's callbacks stays visible (a continue's notes and the lines after), the last RUN_LOG_LINES kept, and a new run's list starts empty.
import { act } from 'react';
import { createRoot } from 'react-dom/client';
import { expect, it } from 'vitest';
import { RUN_LOG_LINES, RunLog } from './RunLog.js';
import { useApp } from './store.js';
import { runCallbacks } from './TrainPanel.js';

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

it('shows each logged line, oldest first, up to the last RUN_LOG_LINES', async () => {
  useApp.setState({ log: [] });
  const el = document.body.appendChild(document.createElement('div'));
  const root = createRoot(el);
  await act(async () => root.render(<RunLog />));
  expect(el.querySelector('[data-testid=run-log]')).toBeNull();
  const cb = runCallbacks(true);
  await act(async () => {
    cb.onLog('Continuing the run from step 4 of 8');
    cb.onLog('The base model name differs from the run state’s');
  });
  const lines = () => [...el.querySelectorAll('[data-testid=run-log] li')].map((li) => li.textContent);
  expect(lines()).toEqual(['Continuing the run from step 4 of 8', 'The base model name differs from the run state’s']);
  // The page's own message (a refused start, a storage warning) is not where the log goes.
  expect(useApp.getState().run.message).toBeUndefined();
  await act(async () => {
    for (let i = 0; i < RUN_LOG_LINES; i++) cb.onLog(`line ${i}`);
  });
  expect(lines()).toHaveLength(RUN_LOG_LINES);
  expect([lines()[0], lines().at(-1)]).toEqual(['line 0', `line ${RUN_LOG_LINES - 1}`]);
  act(() => root.unmount());
  el.remove();
});
