// Calls to the service's own API. Events are read with fetch, not EventSource, because
// EventSource cannot send the Authorization header a service with API keys requires.

export class ApiError extends Error {}

function headers(key, extra = {}) {
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function answer(response) {
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!response.ok) {
    const where = body && body.field ? ` (${body.field})` : "";
    const what = body && body.message ? body.message : `${response.status} ${response.statusText}`;
    throw new ApiError(`${what}${where}`);
  }
  return body;
}

export async function getJson(path, key) {
  return answer(await fetch(path, { headers: headers(key) }));
}

export async function postJson(path, body, key) {
  const response = await fetch(path, {
    method: "POST",
    headers: headers(key, { "Content-Type": "application/json" }),
    body: JSON.stringify(body),
  });
  return answer(response);
}

// Calls onEvent(kind, data) for each event of the job until `done`; after a dropped
// connection it asks again with Last-Event-ID, so no event is seen twice or missed.
export async function followJob(jobId, key, onEvent) {
  let lastId = null;
  for (let attempt = 0; attempt < 5; attempt++) {
    const extra = lastId === null ? {} : { "Last-Event-ID": lastId };
    const response = await fetch(`/api/v1/jobs/${jobId}/events`, { headers: headers(key, extra) });
    if (!response.ok) await answer(response);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const event = parseBlock(block);
        if (event === null) continue;  // a keep-alive comment
        if (event.id !== null) lastId = event.id;
        onEvent(event.kind, event.data);
        if (event.kind === "done") return;
      }
    }
  }
  throw new ApiError("the event stream kept breaking off");
}

function parseBlock(block) {
  let kind = "message", id = null;
  const data = [];
  for (const line of block.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") kind = value;
    else if (field === "id") id = value;
    else if (field === "data") data.push(value);
  }
  if (data.length === 0 && kind === "message") return null;
  return { kind, id, data: data.length ? JSON.parse(data.join("\n")) : null };
}
