// What the page holds: the windows and words received, the window on show, the
// server's hello, status and stats; and which modalities the model scores.

export const MODALITIES = ["text", "audio", "video"];
export const PRESENT_TEXT = { text: "words", audio: "speech", video: "face" };
export const ABSENT_TEXT = { text: "no words", audio: "silence", video: "no face" };

export const state = {
  hello: null,
  mode: "live",
  session: null,
  status: null,         // {state, detail} from the server
  stepSeconds: 0.5,
  windows: [],          // sorted by seq
  seqs: new Set(),
  pageCut: 0,           // windows this page dropped past MAX_WINDOWS
  words: [],            // sorted by start
  wordKeys: new Set(),
  current: null,        // the window on show
  announced: "",        // the last label told to screen readers
  lastWindowAt: 0,      // performance.now() when the newest live window came
  stats: null,
  replayIndex: 0,
  playTimer: null,
};

// modalities the model scores (hello.model.inputs); others are shown but marked "not scored"
export function modelInputs() {
  const inputs = state.hello && state.hello.model && state.hello.model.inputs;
  return Array.isArray(inputs) ? MODALITIES.filter((m) => inputs.includes(m)) : MODALITIES.slice();
}
export const scored = (m) => modelInputs().includes(m);
