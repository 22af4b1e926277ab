// The run's log on the Train panel: every line the worker sent this run (what a continue goes on from, its notes), the last RUN_LOG_LINES, scrollable.
import { useEffect, useRef } from 'react';
import { useApp } from './store.js';

/** How many of the run's log lines the page keeps (older ones drop off the top). */
export const RUN_LOG_LINES = 100;

/** A line the worker logged for the run (`RunCallbacks.onLog`), kept after the earlier ones. */
export function addLogLine(line: string): void {
  useApp.setState((st) => ({ log: [...st.log, line].slice(-RUN_LOG_LINES) }));
}

/** The log lines, oldest first, scrolled to the newest as lines arrive; nothing while there are none. */
export function RunLog() {
  const log = useApp((st) => st.log);
  const box = useRef<HTMLOListElement>(null);
  useEffect(() => {
    if (box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [log]);
  if (!log.length) return null;
  return (
    <ol className="log" data-testid="run-log" aria-label="Run log" ref={box}>
      {log.map((line, i) => (
        <li key={i}>{line}</li>
      ))}
    </ol>
  );
}
