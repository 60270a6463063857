// The Live view: the event stream with StreamEvents' own filters (tickets, scenes, types;
// OR within a field, AND across fields), optionally from a cursor, reconnecting after a
// drop with the last cursor it showed. "Drop connection" breaks the stream on purpose to
// show the resume. A new caller token clears the list; the stream reconnects with the new
// token after the same cursor, so what follows is what that token may see.

import { byId, EventType, eventItem } from "./api.js";
import { follow, stateText, type Follow } from "./follow.js";
import { onTokenChange } from "./token.js";

/** Rows kept on screen; older ones are removed. */
const MAX_ROWS = 500;

let stream: Follow | undefined;

export function initLive(): void {
  byId<HTMLFormElement>("live-form").addEventListener("submit", (submit) => {
    submit.preventDefault();
    start();
  });
  byId("live-drop").addEventListener("click", () => stream?.drop());
  onTokenChange(() => byId("live-events").replaceChildren());
  start();
}

function list(id: string): string[] {
  return byId<HTMLInputElement>(id)
    .value.split(/[\s,]+/)
    .filter((item) => item !== "");
}

function start(): void {
  stream?.stop();
  const types = [EventType.SUBSCRIBE, EventType.SCAN, EventType.UNSUBSCRIBE].filter(
    (type) => byId<HTMLInputElement>(`live-type-${type}`).checked,
  );
  const events = byId("live-events");
  const cursor = byId("live-cursor");
  const state = byId("live-state");
  events.replaceChildren();
  stream = follow(
    // No type ticked means every type, as in StreamEvents.
    { tickets: list("live-tickets"), scenes: list("live-scenes"), types: types.length === 3 ? [] : types },
    {
      event: (event, at) => {
        events.prepend(eventItem(event, at));
        while (events.childElementCount > MAX_ROWS) events.lastElementChild?.remove();
        cursor.textContent = at;
      },
      state: (s) => {
        state.textContent = stateText(s);
        state.dataset.state = s.kind;
      },
    },
    byId<HTMLInputElement>("live-resume").value.trim(),
  );
}
