// The job page of the local Jobs server: follows the log (EventSource on /events) and the stage
// (/status, every second) until the job is over. Log lines are inserted as text, never as HTML.
"use strict";
(function () {
  const body = document.body;
  const eventsUrl = body.dataset.events;
  const statusUrl = body.dataset.status;
  if (!eventsUrl || !statusUrl) {
    return;
  }
  const log = document.getElementById("log");
  const logState = document.getElementById("log-state");
  const MAX_LINES = 20000; // the page keeps the newest; the whole log stays in the API's /logs
  const POLL_MS = 1000;

  function following() {
    return log.scrollTop + log.clientHeight >= log.scrollHeight - 24;
  }

  function appendLine(text, timestamp) {
    const follow = following();
    const line = document.createElement("div");
    line.className = "line";
    const time = document.createElement("span");
    time.className = "ts";
    time.textContent = timestamp.length >= 19 ? timestamp.slice(11, 19) : timestamp;
    time.title = timestamp;
    const content = document.createElement("span");
    content.className = "text";
    content.textContent = text;
    line.append(time, content);
    log.append(line);
    while (log.childElementCount > MAX_LINES) {
      log.firstElementChild.remove();
    }
    if (follow) {
      log.scrollTop = log.scrollHeight;
    }
  }

  function followLog() {
    const source = new EventSource(eventsUrl);
    // Every connection replays the log from its start: a reconnect starts the page's copy afresh.
    source.onopen = function () {
      log.replaceChildren();
      logState.textContent = "following the log…";
    };
    source.onmessage = function (event) {
      let entry;
      try {
        entry = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      appendLine(String(entry.data ?? ""), String(entry.timestamp ?? ""));
    };
    // The job is over: the server closes the stream right after "end" (having set a long retry), and
    // the page closes its side then, so the browser neither reconnects nor aborts a finished answer.
    let ended = false;
    source.addEventListener("end", function () {
      ended = true;
      logState.textContent = "end of log";
      window.setTimeout(function () {
        source.close();
      }, 2000);
    });
    source.onerror = function () {
      if (ended) {
        source.close();
        return;
      }
      logState.textContent =
        source.readyState === EventSource.CLOSED ? "log disconnected: reload the page" : "reconnecting…";
    };
  }

  function showStatus(status) {
    const stage = document.getElementById("stage");
    stage.textContent = status.stage;
    stage.className = "stage stage-" + status.stage;
    for (const key of ["message", "started", "finished", "duration", "cost", "attempts"]) {
      const element = document.getElementById(key);
      if (element && typeof status[key] === "string") {
        element.textContent = status[key];
      }
    }
    if (status.terminal) {
      const form = document.getElementById("cancel-form");
      if (form) {
        form.remove();
      }
    }
  }

  async function pollStatus() {
    let terminal = false;
    try {
      const response = await fetch(statusUrl, { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) {
        window.location.reload(); // the session ended: the page asks for the token again
        return;
      }
      if (response.ok) {
        const status = await response.json();
        showStatus(status);
        terminal = status.terminal === true;
      }
    } catch (error) {
      // the server is restarting or gone: try again
    }
    if (!terminal) {
      window.setTimeout(pollStatus, POLL_MS);
    }
  }

  const cancelForm = document.getElementById("cancel-form");
  if (cancelForm) {
    cancelForm.addEventListener("submit", function () {
      const button = document.getElementById("cancel");
      button.textContent = "Cancelling…";
    });
  }

  followLog();
  window.setTimeout(pollStatus, POLL_MS);
})();
