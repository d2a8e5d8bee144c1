// Step timings for the one log line of a host operation (create, restore): where its time went.

/** Step durations in ms; a step may carry its own breakdown. */
export type StepTimings = { [step: string]: number | StepTimings };

/** `lap(step)` records the time since the last lap (or the start) under `step`. */
export function stopwatch(): { timings: StepTimings; lap: (step: string) => void } {
  const timings: StepTimings = {};
  let t0 = performance.now();
  return {
    timings,
    lap: (step) => {
      const now = performance.now();
      timings[step] = Math.round(now - t0);
      t0 = now;
    },
  };
}
