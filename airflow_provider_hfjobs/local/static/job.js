// The local Jobs server's pages. The HTML is a shell without data. This script asks for the server's
// token once, keeps the session id it gets in sessionStorage (browsers scope it by origin: scheme, host and
// port, so no other server on this host ever sees it) and sends it in the X-HFJobs-Session header to the
// JSON endpoints; it never uses cookies (credentials: "omit"). A view is JsonML, [tag, {attributes},
// ...children], built with createElement and text nodes only: whitelisted tags and attributes, links and
// buttons to this server's own paths. The log is read from a fetch stream (an EventSource cannot send a
// header) and every line is inserted as text.
"use strict";
(function () {
  const SESSION_KEY = "hfjobs-local-session";
  const SESSION_HEADER = "X-HFJobs-Session";
  const LOGIN_PATH = "/_local/login";
  const LOGOUT_PATH = "/_local/logout";
  const VIEW_PREFIX = "/_local/view";
  const MAX_LINES = 20000; // the page keeps the newest; the whole log stays in the API's /logs
  const POLL_MS = 1000;
  const RETRY_MS = [1000, 2000, 5000, 10000, 30000]; // between reconnections of the log stream
  const ENDED = "Your session has ended (it expired, you logged out elsewhere, or the server restarted): " +
    "paste the token again.";
  const TAGS = new Set([
    "a", "br", "button", "code", "div", "h1", "h2", "li", "ol", "p", "pre", "section", "span", "table",
    "tbody", "td", "th", "thead", "tr", "ul",
  ]);
  const ATTRIBUTES = new Set(["aria-live", "class", "data-action", "data-busy", "href", "id", "role", "scope",
    "title"]);
  const PATH_ATTRIBUTES = new Set(["href", "data-action"]);

  const byId = (id) => document.getElementById(id);
  let session = window.sessionStorage.getItem(SESSION_KEY);
  let running = null; // the AbortController of the shown view's requests (log stream, status polls)
  let statusUrl = null; // the shown job's /status, on a job page

  class LoggedOut extends Error {}

  function isLocalPath(value) {
    return typeof value === "string" && /^\/(?![/\\])/.test(value) && !/[\\\u0000-\u001f\u007f]/.test(value);
  }

  // One node of a view: a string is a text node; anything not whitelisted is left out.
  function build(node) {
    if (typeof node === "string") {
      return document.createTextNode(node);
    }
    if (!Array.isArray(node) || !TAGS.has(node[0])) {
      return document.createTextNode("");
    }
    const element = document.createElement(node[0]);
    const attributes = node[1] && typeof node[1] === "object" ? node[1] : {};
    for (const [name, value] of Object.entries(attributes)) {
      if (ATTRIBUTES.has(name) && typeof value === "string" && (!PATH_ATTRIBUTES.has(name) || isLocalPath(value))) {
        element.setAttribute(name, value);
      }
    }
    if (element.tagName === "BUTTON") {
      element.type = "button";
    }
    for (const child of node.slice(2)) {
      element.append(build(child));
    }
    return element;
  }

  function sleep(ms, signal) {
    return new Promise(function (resolve) {
      const timer = window.setTimeout(resolve, ms);
      signal.addEventListener("abort", function () {
        window.clearTimeout(timer);
        resolve();
      }, { once: true });
    });
  }

  // A request with this tab's session; a 401 means it has ended: back to the login form.
  async function call(method, url, signal) {
    const response = await fetch(url, {
      method: method,
      headers: { [SESSION_HEADER]: session || "" },
      credentials: "omit",
      cache: "no-store",
      redirect: "error",
      signal: signal,
    });
    if (response.status === 401) {
      loggedOut(ENDED);
      throw new LoggedOut();
    }
    return response;
  }

  async function answerOf(response) {
    try {
      return await response.json();
    } catch (error) {
      return {};
    }
  }

  function notify(text, problem) {
    const notices = byId("notices");
    if (!text) {
      notices.replaceChildren();
      return;
    }
    const line = document.createElement("p");
    line.className = problem ? "error" : "notice";
    line.setAttribute("role", problem ? "alert" : "status");
    line.textContent = text;
    notices.replaceChildren(line);
  }

  function showLogin(problem) {
    byId("view").hidden = true;
    byId("logout").hidden = true;
    byId("namespace").textContent = "";
    byId("content").replaceChildren();
    notify("");
    document.title = "Log in · Local HF Jobs";
    const alert = byId("login-problem");
    alert.textContent = problem || "";
    alert.hidden = !problem;
    byId("login").hidden = false;
    byId("token").focus();
  }

  function loggedOut(problem) {
    if (running) {
      running.abort();
      running = null;
    }
    statusUrl = null;
    session = null;
    window.sessionStorage.removeItem(SESSION_KEY);
    showLogin(problem);
  }

  async function logIn(event) {
    event.preventDefault();
    const input = byId("token");
    const token = input.value.trim();
    input.value = "";
    let response;
    try {
      response = await fetch(LOGIN_PATH, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: token }),
        credentials: "omit",
        cache: "no-store",
        redirect: "error",
      });
    } catch (error) {
      showLogin("The server did not answer: is it still running?");
      return;
    }
    const answer = await answerOf(response);
    if (!response.ok || typeof answer.session !== "string") {
      showLogin(String(answer.error || "Login failed (" + response.status + ")."));
      return;
    }
    session = answer.session;
    window.sessionStorage.setItem(SESSION_KEY, session);
    await show();
  }

  async function logOut() {
    try {
      await fetch(LOGOUT_PATH, {
        method: "POST",
        headers: { [SESSION_HEADER]: session || "" },
        credentials: "omit",
        cache: "no-store",
        redirect: "error",
      });
    } catch (error) {
      // the server is gone, and its sessions with it
    }
    loggedOut(null);
  }

  function render(view) {
    document.title = typeof view.title === "string" ? view.title : "Local HF Jobs";
    byId("namespace").textContent = typeof view.namespace === "string" ? view.namespace : "";
    const body = Array.isArray(view.body) ? view.body : [["p", { class: "error" }, String(view.error || "")]];
    byId("content").replaceChildren(...body.map(build));
    byId("login").hidden = true;
    byId("view").hidden = false;
    byId("logout").hidden = false;
    if (window.location.hash.length > 1) {
      let target = null;
      try {
        target = document.getElementById(decodeURIComponent(window.location.hash.slice(1)));
      } catch (error) {
        // a malformed fragment: nothing to scroll to
      }
      if (target && byId("content").contains(target)) {
        target.scrollIntoView();
      }
    }
  }

  // The view of this path (the list, or a job and then its log and stage).
  async function show() {
    if (running) {
      running.abort();
    }
    const controller = new AbortController();
    running = controller;
    statusUrl = null;
    let response;
    try {
      response = await call("GET", VIEW_PREFIX + window.location.pathname, controller.signal);
    } catch (error) {
      if (!(error instanceof LoggedOut) && !controller.signal.aborted) {
        render({ title: "Local HF Jobs", error: "The server did not answer: reload the page once it is back." });
      }
      return;
    }
    const view = await answerOf(response);
    if (controller.signal.aborted) {
      return;
    }
    render(view);
    const job = view.job;
    if (response.ok && job && isLocalPath(job.events) && isLocalPath(job.status)) {
      statusUrl = job.status;
      followLog(job.events, controller.signal);
      pollStatus(job.status, controller.signal);
    }
  }

  function following(log) {
    return log.scrollTop + log.clientHeight >= log.scrollHeight - 24;
  }

  function appendLine(text, timestamp) {
    const log = byId("log");
    const follow = following(log);
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

  // One server-sent event (its lines, without the blank line); true for "end" (the job is over).
  function dispatch(block) {
    let kind = "message";
    const data = [];
    for (const raw of block.split("\n")) {
      const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
      if (!line || line.startsWith(":")) {
        continue; // a keep-alive comment
      }
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) {
        value = value.slice(1);
      }
      if (field === "event") {
        kind = value;
      } else if (field === "data") {
        data.push(value);
      }
    }
    if (kind === "end") {
      return true;
    }
    if (kind === "message" && data.length) {
      let entry;
      try {
        entry = JSON.parse(data.join("\n"));
      } catch (error) {
        return false;
      }
      appendLine(String(entry.data ?? ""), String(entry.timestamp ?? ""));
    }
    return false;
  }

  // The events of one log stream as they come, to its end; true if it ended with "end" (the server
  // closes the stream right after it, so the answer completes rather than being aborted).
  async function readEvents(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let ended = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        return ended;
      }
      buffer += value;
      let cut = buffer.indexOf("\n\n");
      while (cut >= 0 && !ended) {
        ended = dispatch(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
        cut = buffer.indexOf("\n\n");
      }
    }
  }

  // Every connection replays the log from its start: a reconnection starts the page's copy afresh.
  async function followLog(url, signal) {
    const state = byId("log-state");
    for (let failures = 0; !signal.aborted; failures += 1) {
      let ended = false;
      try {
        const response = await call("GET", url, signal);
        if (response.ok && response.body) {
          byId("log").replaceChildren();
          state.textContent = "following the log…";
          failures = 0;
          ended = await readEvents(response.body);
        }
      } catch (error) {
        if (error instanceof LoggedOut || signal.aborted) {
          return;
        }
      }
      if (ended) {
        state.textContent = "end of log";
        return;
      }
      state.textContent = "reconnecting…";
      await sleep(RETRY_MS[Math.min(failures, RETRY_MS.length - 1)], signal);
    }
  }

  function showStatus(status) {
    const stage = byId("stage");
    if (!stage || typeof status.stage !== "string") {
      return;
    }
    stage.textContent = status.stage;
    stage.className = "stage stage-" + status.stage;
    for (const key of ["message", "started", "finished", "duration", "cost", "attempts"]) {
      const element = byId(key);
      if (element && typeof status[key] === "string") {
        element.textContent = status[key];
      }
    }
    if (status.terminal === true) {
      const cancel = byId("cancel");
      if (cancel) {
        cancel.remove();
      }
    }
  }

  // The job's stage now; true once it is over. Throws LoggedOut (or a network error).
  async function refreshStatus(url, signal) {
    const response = await call("GET", url, signal);
    if (!response.ok) {
      return false;
    }
    const status = await answerOf(response);
    if (signal.aborted) {
      return true;
    }
    showStatus(status);
    return status.terminal === true;
  }

  async function pollStatus(url, signal) {
    while (!signal.aborted) {
      await sleep(POLL_MS, signal);
      try {
        if (signal.aborted || (await refreshStatus(url, signal))) {
          return;
        }
      } catch (error) {
        if (error instanceof LoggedOut || signal.aborted) {
          return;
        }
        // the server is restarting or gone: try again
      }
    }
  }

  // A button of a view (Cancel; Suspend, Resume, Run now): POST with the session, then show the outcome.
  async function act(button) {
    const action = button.dataset.action;
    if (!isLocalPath(action) || button.disabled || !running) {
      return;
    }
    const signal = running.signal;
    const label = button.textContent;
    button.disabled = true;
    if (button.dataset.busy) {
      button.textContent = button.dataset.busy;
    }
    let response = null;
    let answer;
    try {
      response = await call("POST", action, signal);
      answer = await answerOf(response);
    } catch (error) {
      if (error instanceof LoggedOut || signal.aborted) {
        return;
      }
      answer = { error: "The server did not answer: try again once it is back." };
    }
    const failed = response === null || !response.ok;
    if (statusUrl) {
      if (failed) {
        button.disabled = false;
        button.textContent = label;
      }
      try {
        await refreshStatus(statusUrl, signal); // a cancelled job's stage (which removes the button)
      } catch (error) {
        if (error instanceof LoggedOut || signal.aborted) {
          return;
        }
      }
    } else {
      await show(); // the list again, with what changed
    }
    if (session) {
      notify(String(answer.error || answer.notice || ""), failed);
    }
  }

  byId("login-form").addEventListener("submit", logIn);
  byId("logout").addEventListener("click", logOut);
  byId("content").addEventListener("click", function (event) {
    const button = event.target instanceof Element ? event.target.closest("button[data-action]") : null;
    if (button) {
      event.preventDefault();
      act(button);
    }
  });
  if (session) {
    show();
  } else {
    showLogin(null);
  }
})();
