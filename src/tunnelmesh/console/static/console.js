// tunnelmesh console: the little that plain HTML forms cannot do. No framework, no build step.
// Text only ever goes in through textContent/value, never as markup.

function csrfToken() {
  const input = document.querySelector("input[name=csrf]");
  return input ? input.value : "";
}

// "select all" for a multi-delete: a checkbox with data-select-all names the form whose boxes it drives
function selectAll() {
  for (const box of document.querySelectorAll("input[data-select-all]")) {
    box.addEventListener("change", () => {
      const form = document.getElementById(box.dataset.selectAll);
      if (!form) return;
      for (const item of form.querySelectorAll("input[type=checkbox][name=key]")) item.checked = box.checked;
    });
  }
}

// a copy button: data-copy names the element whose text or value goes to the clipboard
function copyButtons() {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      if (!source) return;
      const text = "value" in source ? source.value : source.textContent;
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch {
        if (source.select) source.select();
        button.textContent = "Press Ctrl+C";
      }
    });
  }
}


// ---- uploads (docs/operations.md 1.4) ----------------------------------------------------------------
// The server hands out presigned URLs (its secret stays there); the bytes go from here straight to /s3.
// Files go one after another; a multipart file sends PARALLEL parts at a time, each retried RETRIES times.

const PARALLEL = 3;
const RETRIES = 2;
const SPEED_WINDOW_MS = 3000;

class Cancelled extends Error {}

async function api(base, path, doc) {
  const response = await fetch(base + path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json", "x-csrf-token": csrfToken() },
    body: JSON.stringify(doc),
  });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    throw new Error(body && body.error ? `${body.error}: ${body.message}` : `HTTP ${response.status}`);
  }
  return body;
}

// the S3 error code of a refused PUT, from its XML body
function s3Error(xhr) {
  const doc = xhr.responseXML;
  const code = doc && doc.getElementsByTagName("Code")[0];
  const message = doc && doc.getElementsByTagName("Message")[0];
  return code ? `${code.textContent}: ${message ? message.textContent : ""}` : `HTTP ${xhr.status}`;
}

function humanSize(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

class Upload {
  constructor(place, file, list) {
    this.place = place; // the drop zone's data-*: api, bucket, prefix, objects (details page URL)
    this.file = file;
    this.key = place.prefix + file.name;
    this.requests = new Set();
    this.cancelled = false; // by the user
    this.stopped = false; // by the user or by a part that failed for good: no part starts or retries
    this.uploadId = null;
    this.done = new Map(); // part number -> bytes stored
    this.inFlight = new Map(); // part number -> bytes sent so far
    this.samples = [];
    this.row = this.render(list);
  }

  render(list) {
    const row = document.createElement("li");
    row.className = "upload";
    row.dataset.key = this.key;
    row.dataset.state = "queued";
    row.dataset.parts = "0";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = this.key;
    this.bar = document.createElement("progress");
    this.bar.max = Math.max(this.file.size, 1);
    this.bar.value = 0;
    this.status = document.createElement("span");
    this.status.className = "status";
    this.status.textContent = `waiting · ${humanSize(this.file.size)}`;
    this.cancelButton = document.createElement("button");
    this.cancelButton.type = "button";
    this.cancelButton.className = "plain cancel";
    this.cancelButton.textContent = "Cancel";
    this.cancelButton.addEventListener("click", () => this.cancel());
    row.append(name, this.bar, this.status, this.cancelButton);
    list.append(row);
    return row;
  }

  setState(state, text) {
    this.row.dataset.state = state;
    this.status.textContent = text;
    if (state !== "queued" && state !== "uploading") this.cancelButton.remove();
    this.announce();
  }

  loaded() {
    let n = 0;
    for (const b of this.done.values()) n += b;
    for (const b of this.inFlight.values()) n += b;
    return n;
  }

  // progress for the page and for anyone listening (a test, a benchmark): a `tm-upload` event on document
  announce() {
    const loaded = this.loaded();
    const detail = { key: this.key, loaded, total: this.file.size, state: this.row.dataset.state };
    document.dispatchEvent(new CustomEvent("tm-upload", { detail }));
    return loaded;
  }

  progress() {
    const loaded = this.announce();
    const now = performance.now();
    this.samples.push([now, loaded]);
    while (this.samples.length > 2 && now - this.samples[0][0] > SPEED_WINDOW_MS) this.samples.shift();
    const [t0, b0] = this.samples[0];
    const speed = now > t0 ? ((loaded - b0) * 1000) / (now - t0) : 0;
    const percent = this.file.size ? Math.floor((loaded * 100) / this.file.size) : 100;
    this.bar.value = Math.min(loaded, this.file.size);
    this.status.textContent = `${percent} % · ${humanSize(Math.round(speed))}/s`;
  }

  async cancel() {
    if (this.cancelled || !["queued", "uploading"].includes(this.row.dataset.state)) return;
    this.cancelled = true;
    this.stop();
    this.setState("cancelling", "cancelling…");
    // a cancel while the upload is being started: its id comes with the answer
    const plan = this.started ? await this.started.catch(() => null) : null;
    const uploadId = this.uploadId || (plan && plan.upload_id);
    try {
      if (uploadId) await this.call("/abort", { upload_id: uploadId });
      this.setState("cancelled", "cancelled");
    } catch (e) {
      this.setState("failed", `cancel failed: ${e.message}`);
    }
  }

  stop() {
    this.stopped = true;
    for (const xhr of this.requests) xhr.abort();
  }

  call(path, doc) {
    return api(this.place.api, path, { bucket: this.place.bucket, key: this.key, ...doc });
  }

  // one PUT of `blob` to a presigned URL: resolves with the ETag, rejects with the S3 error
  put(url, blob, part) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      this.requests.add(xhr);
      xhr.open("PUT", url);
      xhr.upload.addEventListener("progress", (e) => {
        this.inFlight.set(part, e.loaded);
        this.progress();
      });
      xhr.addEventListener("loadend", () => {
        this.requests.delete(xhr);
        const ok = !this.stopped && xhr.status >= 200 && xhr.status < 300;
        // a stored part stays counted until it moves to `done`: the progress never goes backwards but on a retry
        if (!ok) this.inFlight.delete(part);
        if (this.stopped) reject(new Cancelled());
        else if (ok) resolve(xhr.getResponseHeader("ETag") || "");
        else {
          const error = new Error(xhr.status ? s3Error(xhr) : "the connection failed");
          // a network failure, a timeout, a server error or an expired URL is worth another try
          error.retry = xhr.status === 0 || xhr.status >= 500 || xhr.status === 408 || xhr.status === 403;
          reject(error);
        }
      });
      xhr.send(blob);
    });
  }

  async run() {
    if (this.cancelled) return;
    this.setState("uploading", "starting…");
    const began = performance.now();
    const size = this.file.size;
    try {
      this.started = this.call("", { size, type: this.file.type || "" });
      const plan = await this.started;
      this.uploadId = plan.upload_id;
      if (this.cancelled) throw new Cancelled();
      this.urls = plan.urls;
      if (!plan.upload_id) {
        await this.put(plan.urls["1"], this.file, 1);
        this.done.set(1, size);
        this.inFlight.delete(1);
        this.row.dataset.parts = "1";
      } else {
        const etags = await this.sendParts(plan);
        const parts = etags.map((etag, i) => ({ part: i + 1, etag }));
        await this.call("/complete", { upload_id: this.uploadId, parts });
      }
      this.progress();
      const seconds = (performance.now() - began) / 1000;
      const rate = seconds > 0 ? ` · ${humanSize(Math.round(size / seconds))}/s` : "";
      this.setState("done", `100 % · ${humanSize(size)} in ${seconds.toFixed(1)} s${rate}`);
      this.link();
      refreshLink();
    } catch (e) {
      if (this.cancelled || e instanceof Cancelled) return;
      this.setState("failed", `failed: ${e.message}`);
      if (this.uploadId) this.call("/abort", { upload_id: this.uploadId }).catch(() => null);
    }
  }

  link() {
    const a = document.createElement("a");
    a.href = `${this.place.objects}?${new URLSearchParams({ key: this.key })}`;
    a.textContent = "details";
    this.row.append(a);
  }

  async urlFor(n, parts) {
    if (!this.urls[String(n)]) {
      const more = await this.call("/urls", { upload_id: this.uploadId, first: n, parts });
      Object.assign(this.urls, more.urls);
    }
    return this.urls[String(n)];
  }

  async sendParts(plan) {
    const etags = new Array(plan.parts);
    let next = 1;
    const worker = async () => {
      while (next <= plan.parts && !this.stopped) {
        const n = next;
        next += 1;
        const start = (n - 1) * plan.part_size;
        const blob = this.file.slice(start, Math.min(start + plan.part_size, this.file.size));
        for (let attempt = 0; ; attempt += 1) {
          if (this.stopped) throw new Cancelled();
          try {
            etags[n - 1] = await this.put(await this.urlFor(n, plan.parts), blob, n);
            break;
          } catch (e) {
            if (e instanceof Cancelled || !e.retry || attempt >= RETRIES) {
              if (!(e instanceof Cancelled)) this.stop(); // the others stop too: the upload has failed
              throw e;
            }
            delete this.urls[String(n)]; // a fresh URL for the retry (an old one may have expired)
          }
        }
        this.done.set(n, blob.size);
        this.inFlight.delete(n);
        this.row.dataset.parts = String(this.done.size);
        this.progress();
      }
    };
    const workers = [];
    for (let i = 0; i < Math.min(PARALLEL, plan.parts); i += 1) workers.push(worker());
    const results = await Promise.allSettled(workers);
    const failed = results.filter((r) => r.status === "rejected").map((r) => r.reason);
    if (this.cancelled || failed.length) throw failed.find((e) => !(e instanceof Cancelled)) || new Cancelled();
    return etags;
  }
}

// once something is uploaded, the listing (rendered by the server) is one click from showing it
function refreshLink() {
  if (document.getElementById("uploads-refresh")) return;
  const a = document.createElement("a");
  a.id = "uploads-refresh";
  a.href = window.location.href;
  a.textContent = "Refresh the list to show the uploaded files";
  document.getElementById("upload").append(a);
}

// the objects page: a file picker and drops anywhere on the page, queued one file after another
function uploads() {
  const zone = document.getElementById("upload");
  const list = document.getElementById("uploads");
  const picker = document.getElementById("upload-files");
  if (!zone || !list || !picker) return;
  let queue = Promise.resolve();
  const start = (files) => {
    for (const file of files) {
      const upload = new Upload(zone.dataset, file, list);
      queue = queue.then(() => upload.run());
    }
  };
  picker.addEventListener("change", () => {
    start(Array.from(picker.files));
    picker.value = "";
  });
  document.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  document.addEventListener("dragleave", (e) => {
    if (!e.relatedTarget) zone.classList.remove("over");
  });
  document.addEventListener("drop", (e) => {
    e.preventDefault(); // a file dropped on the page must not replace the page
    zone.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files.length) start(Array.from(e.dataTransfer.files));
  });
}

export { csrfToken };

selectAll();
copyButtons();
uploads();
// tells a test (and anyone curious) that the module ran under the page's CSP
document.documentElement.dataset.console = "ready";
