// The IndexedDB reader, evaluated by harvester/reader.py inside an isolated world of the page.
//
// An isolated world shares the page's DOM and origin (so its IndexedDB) but has its own
// JavaScript globals: whatever the page did to `indexedDB`, `JSON`, `Array.prototype`, `Promise`
// or `IDBObjectStore.prototype`, the built-ins used here are pristine. Values read through this
// world's `indexedDB` are also deserialized with this world's prototypes, which is what lets the
// encoder tell types apart by prototype identity.
//
// Keys and values are written as canonical typed JSON (docs/typed-json.md): every object's keys
// sorted by UTF-16 code units, Map/Set/array order kept, no whitespace. A batch is one string:
// a JSON header line, then for each record its key text and its value text, all joined by "\n".
// Typed JSON text never holds a raw newline (JSON.stringify escapes it), so Python can split the
// batch without parsing the texts.
(() => {
  "use strict";
  if (globalThis.__idbHarvester) return;

  const stringify = JSON.stringify;
  const getProto = Object.getPrototypeOf;
  const objectKeys = Object.keys;
  const isArray = Array.isArray;
  const isView = ArrayBuffer.isView;
  const toTag = (v) => Object.prototype.toString.call(v).slice(8, -1);
  const P = {
    object: Object.prototype,
    array: Array.prototype,
    date: Date.prototype,
    regexp: RegExp.prototype,
    map: Map.prototype,
    set: Set.prototype,
    arrayBuffer: ArrayBuffer.prototype,
    blob: Blob.prototype,
    file: File.prototype,
    number: Number.prototype,
    string: String.prototype,
    boolean: Boolean.prototype,
    bigint: BigInt.prototype,
    cryptoKey: typeof CryptoKey === "function" ? CryptoKey.prototype : null,
  };
  const hasGetAllRecords = typeof IDBObjectStore.prototype.getAllRecords === "function";
  const hasToBase64 = typeof Uint8Array.prototype.toBase64 === "function";

  // Base64 ------------------------------------------------------------------------------------

  function base64(bytes) {
    if (hasToBase64) return bytes.toBase64();
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(binary);
  }

  // SHA-256, incremental: a Blob over the byte limit is hashed as it streams, never held whole
  // (crypto.subtle.digest needs all bytes at once, and is missing on plain-http pages).
  const K = Int32Array.from([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
  ]);

  const SHA256_IV = Int32Array.from([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
    0x5be0cd19,
  ]);

  // Compresses the 64-byte blocks of `b` in [from, to) into the state `h` (`w`: scratch).
  function sha256Blocks(h, w, b, from, to) {
    for (let o = from; o < to; o += 64) {
      for (let t = 0; t < 16; t++) {
        const i = o + 4 * t;
        w[t] = (b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3];
      }
      for (let t = 16; t < 64; t++) {
        const x = w[t - 15];
        const y = w[t - 2];
        const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
        const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
        w[t] = (w[t - 16] + s0 + w[t - 7] + s1) | 0;
      }
      let a = h[0];
      let bb = h[1];
      let c = h[2];
      let d = h[3];
      let e = h[4];
      let f = h[5];
      let g = h[6];
      let hh = h[7];
      for (let t = 0; t < 64; t++) {
        const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
        const t1 = (hh + s1 + ((e & f) ^ (~e & g)) + K[t] + w[t]) | 0;
        const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
        const t2 = (s0 + ((a & bb) ^ (a & c) ^ (bb & c))) | 0;
        hh = g;
        g = f;
        f = e;
        e = (d + t1) | 0;
        d = c;
        c = bb;
        bb = a;
        a = (t1 + t2) | 0;
      }
      h[0] += a;
      h[1] += bb;
      h[2] += c;
      h[3] += d;
      h[4] += e;
      h[5] += f;
      h[6] += g;
      h[7] += hh;
    }
  }

  const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

  function sha256Hex(h) {
    let out = "";
    for (let i = 0; i < 8; i++) {
      const x = h[i];
      out += HEX[x >>> 24] + HEX[(x >>> 16) & 255] + HEX[(x >>> 8) & 255] + HEX[x & 255];
    }
    return out;
  }

  // Writes SHA-256's padding for a message of `length` bytes at `at`; where the blocks end.
  function sha256Pad(b, at, length) {
    const end = at + (at % 64 < 56 ? 64 - (at % 64) : 128 - (at % 64));
    b.fill(0, at, end);
    b[at] = 0x80;
    const bits = length * 8;
    const hi = Math.floor(bits / 0x100000000);
    const lo = bits >>> 0;
    b[end - 8] = hi >>> 24;
    b[end - 7] = (hi >>> 16) & 255;
    b[end - 6] = (hi >>> 8) & 255;
    b[end - 5] = hi & 255;
    b[end - 4] = lo >>> 24;
    b[end - 3] = (lo >>> 16) & 255;
    b[end - 2] = (lo >>> 8) & 255;
    b[end - 1] = lo & 255;
    return end;
  }

  class Sha256 {
    constructor() {
      this.h = SHA256_IV.slice();
      this.w = new Int32Array(64);
      this.block = new Uint8Array(128);
      this.filled = 0;
      this.length = 0;
    }

    update(bytes) {
      this.length += bytes.length;
      let i = 0;
      while (i < bytes.length) {
        const n = Math.min(64 - this.filled, bytes.length - i);
        this.block.set(bytes.subarray(i, i + n), this.filled);
        this.filled += n;
        i += n;
        if (this.filled === 64) {
          sha256Blocks(this.h, this.w, this.block, 0, 64);
          this.filled = 0;
        }
      }
    }

    hex() {
      const end = sha256Pad(this.block, this.filled, this.length);
      sha256Blocks(this.h, this.w, this.block, 0, end);
      return sha256Hex(this.h);
    }
  }

  // SHA-256 hex of a string's UTF-8, in one go over a reused buffer: what a hash-first read
  // sends for each value instead of its text (Python's value_hash of the same text).
  const utf8 = new TextEncoder();
  const textState = new Int32Array(8);
  const textScratch = new Int32Array(64);
  let textBytes = new Uint8Array(1 << 16);
  function textSha256(text) {
    // UTF-8 takes at most 3 bytes per UTF-16 code unit; the padding at most 72.
    const room = text.length * 3 + 72;
    if (textBytes.length < room) textBytes = new Uint8Array(Math.max(room, textBytes.length * 2));
    const { written } = utf8.encodeInto(text, textBytes);
    const end = sha256Pad(textBytes, written, written);
    textState.set(SHA256_IV);
    sha256Blocks(textState, textScratch, textBytes, 0, end);
    return { hash: sha256Hex(textState), bytes: written };
  }

  async function blobSha256(blob) {
    const hash = new Sha256();
    const reader = blob.stream().getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return hash.hex();
      hash.update(value);
    }
  }

  // The encoder -------------------------------------------------------------------------------
  //
  // Containers (plain objects, arrays, Maps, Sets) are tracked by identity: a second reference
  // is written as {"$ref": pointer to the first}. Each container gets a path node {p, s}
  // (parent node, segment) so that a pointer is only built when a reference is met.
  // Leaf objects (Date, ArrayBuffer, Blob…) are written by value each time they occur.

  // Containers met so far in the current value, with their path nodes. Most values hold a few
  // containers, for which a linear scan is cheaper than hashing every object into a Map.
  class Seen {
    constructor() {
      this.objects = [];
      this.nodes = [];
      this.n = 0;
      this.map = null;
    }

    get(v) {
      if (this.map !== null) return this.map.get(v);
      for (let i = 0; i < this.n; i++) if (this.objects[i] === v) return this.nodes[i];
      return undefined;
    }

    set(v, node) {
      if (this.map !== null) {
        this.map.set(v, node);
        return;
      }
      this.objects[this.n] = v;
      this.nodes[this.n] = node;
      if (++this.n > 32) {
        this.map = new Map();
        for (let i = 0; i < this.n; i++) this.map.set(this.objects[i], this.nodes[i]);
      }
    }

    clear() {
      this.objects.length = this.nodes.length = this.n = 0;
      this.map = null;
    }
  }

  let seen = new Seen();
  // `"name":` of the member names met lately: apps repeat the same names in every record.
  const memberNames = new Map();
  function memberName(k) {
    let text = memberNames.get(k);
    if (text === undefined) {
      if (memberNames.size >= 10000) memberNames.clear();
      text = stringify(k) + ":";
      memberNames.set(k, text);
    }
    return text;
  }
  let notes = []; // [path, message] of what could not be read in the current value
  let blobs = []; // [blob, its pointer] met in the current value, waiting for their bytes

  const ROOT = { p: null, s: null };
  const escapeSegment = (s) => String(s).replaceAll("~", "~0").replaceAll("/", "~1");

  function pointer(node) {
    let out = "";
    for (let n = node; n.p !== null; n = n.p) out = "/" + escapeSegment(n.s) + out;
    return out;
  }

  const childPointer = (parent, seg) =>
    parent === null ? "" : pointer(parent) + "/" + escapeSegment(seg);

  function number(v) {
    if (v !== v) return '{"$number":"NaN"}';
    if (v === Infinity) return '{"$number":"Infinity"}';
    if (v === -Infinity) return '{"$number":"-Infinity"}';
    if (v === 0 && 1 / v < 0) return '{"$number":"-0"}';
    return "" + v;
  }

  function enc(v, parent, seg) {
    switch (typeof v) {
      case "string":
        return stringify(v);
      case "number":
        return number(v);
      case "boolean":
        return v ? "true" : "false";
      case "undefined":
        return '{"$undefined":true}';
      case "bigint":
        return '{"$bigint":"' + v.toString() + '"}';
      default: // "object": structured clone holds no symbols or functions
        return v === null ? "null" : encObject(v, parent, seg);
    }
  }

  function encObject(v, parent, seg) {
    const prior = seen.get(v);
    if (prior !== undefined) return '{"$ref":' + stringify(pointer(prior)) + "}";
    const proto = getProto(v);
    if (proto === P.object) return encPlain(v, track(v, parent, seg));
    if (isArray(v)) return encArray(v, track(v, parent, seg));
    if (proto === P.date) {
      const t = v.getTime();
      return t !== t ? '{"$date":null}' : '{"$date":"' + v.toISOString() + '"}';
    }
    if (proto === P.map) return encMap(v, track(v, parent, seg));
    if (proto === P.set) return encSet(v, track(v, parent, seg));
    if (proto === P.arrayBuffer) return '{"$bytes":"' + base64(new Uint8Array(v)) + '"}';
    if (isView(v)) {
      const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      return '{"$typed":{"bytes":"' + base64(bytes) + '","type":' + stringify(toTag(v)) + "}}";
    }
    if (proto === P.blob || proto === P.file) {
      blobs.push([v, childPointer(parent, seg)]);
      return "\u0000" + (blobs.length - 1) + "\u0000"; // replaced once the bytes are read
    }
    if (proto === P.regexp) {
      return '{"$regexp":{"flags":' + stringify(v.flags) + ',"source":' + stringify(v.source) + "}}";
    }
    if (v instanceof Error) {
      return (
        '{"$error":{"message":' + stringify(String(v.message)) + ',"name":' + stringify(String(v.name)) + "}}"
      );
    }
    if (proto === P.number) return '{"$boxed":' + number(Number.prototype.valueOf.call(v)) + "}";
    if (proto === P.string) return '{"$boxed":' + stringify(String.prototype.valueOf.call(v)) + "}";
    if (proto === P.boolean) return '{"$boxed":' + Boolean.prototype.valueOf.call(v) + "}";
    if (proto === P.bigint) return '{"$boxed":' + enc(BigInt.prototype.valueOf.call(v)) + "}";
    if (proto === P.cryptoKey && P.cryptoKey !== null) return cryptoKey(v, parent, seg);
    const tag = toTag(v);
    const details = {};
    if (typeof v.toJSON === "function") {
      try {
        details.value = v.toJSON();
      } catch {
        // No readable form: the type name is all there is.
      }
    }
    return opaque(tag, tag + " has no typed JSON form", parent, seg, details);
  }

  function track(v, parent, seg) {
    const node = { p: parent, s: seg };
    seen.set(v, node);
    return node;
  }

  // Sorted by UTF-16 code units, as Array.prototype.sort does; objects have few members, for
  // which an insertion sort is much quicker than the general sort.
  function sortKeys(keys) {
    const n = keys.length;
    if (n > 24) return keys.sort();
    for (let i = 1; i < n; i++) {
      const k = keys[i];
      let j = i - 1;
      for (; j >= 0 && keys[j] > k; j--) keys[j + 1] = keys[j];
      keys[j + 1] = k;
    }
    return keys;
  }

  function encPlain(v, node) {
    const keys = sortKeys(objectKeys(v));
    let escaped = false;
    for (let i = 0; i < keys.length; i++) {
      if (keys[i].charCodeAt(0) === 36) {
        escaped = true;
        break;
      }
    }
    const base = escaped ? { p: node, s: "$object" } : node;
    let out = "{";
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i];
      if (i) out += ",";
      out += memberName(k) + enc(v[k], base, k);
    }
    out += "}";
    return escaped ? '{"$object":' + out + "}" : out;
  }

  function encArray(v, node) {
    const n = v.length;
    const keys = objectKeys(v);
    // Index keys come first, ascending: the last key is n-1 only when there is no hole and no
    // extra property.
    if (keys.length === n && (n === 0 || keys[n - 1] === String(n - 1))) {
      let out = "[";
      for (let i = 0; i < n; i++) {
        if (i) out += ",";
        out += enc(v[i], node, i);
      }
      return out + "]";
    }
    keys.sort();
    const base = { p: { p: node, s: "$array" }, s: "items" };
    let out = '{"$array":{"items":{';
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i];
      if (i) out += ",";
      out += stringify(k) + ":" + enc(v[k], base, k);
    }
    return out + '},"length":' + n + "}}";
  }

  function encMap(v, node) {
    const base = { p: node, s: "$map" };
    let out = '{"$map":[';
    let i = 0;
    for (const [k, val] of v) {
      const entry = { p: base, s: i };
      if (i) out += ",";
      out += "[" + enc(k, entry, 0) + "," + enc(val, entry, 1) + "]";
      i++;
    }
    return out + "]}";
  }

  function encSet(v, node) {
    const base = { p: node, s: "$set" };
    let out = '{"$set":[';
    let i = 0;
    for (const item of v) {
      if (i) out += ",";
      out += enc(item, base, i);
      i++;
    }
    return out + "]}";
  }

  function opaque(type, reason, parent, seg, details = {}) {
    notes.push([childPointer(parent, seg), reason]);
    const saved = seen;
    seen = new Seen(); // details are fresh objects, outside the value's reference graph
    try {
      return '{"$opaque":' + encPlain({ ...details, reason, type }, ROOT) + "}";
    } finally {
      seen = saved;
    }
  }

  function cryptoKey(key, parent, seg) {
    // Copied, so that the key's cached algorithm object never joins the value's references.
    const algorithm = {};
    for (const [name, value] of Object.entries(key.algorithm)) {
      algorithm[name] = value !== null && typeof value === "object" && !isView(value)
        ? { ...value }
        : value;
    }
    const reason = key.extractable
      ? "CryptoKey material is not exported"
      : "CryptoKey is not extractable";
    return opaque("CryptoKey", reason, parent, seg, {
      algorithm,
      extractable: key.extractable,
      keyType: key.type,
      usages: [...key.usages],
    });
  }

  // One value or key as text; `notes` say what could not be read of it.
  function encodeRoot(v) {
    seen.clear();
    try {
      return enc(v, null, null);
    } catch (e) {
      // A getter that throws, a stack overflow on very deep nesting…: keep the record, say why.
      seen.clear();
      blobs = [];
      notes = [];
      return opaque(toTag(v), "could not be encoded: " + errorText(e), null, null);
    }
  }

  async function blobText(blob, maxValueBytes) {
    const file = getProto(blob) === P.file;
    const parts = [];
    if (blob.size <= maxValueBytes) {
      parts.push('"bytes":"' + base64(new Uint8Array(await blob.arrayBuffer())) + '"');
    }
    if (file) {
      parts.push('"lastModified":' + number(blob.lastModified), '"name":' + stringify(blob.name));
    }
    if (blob.size > maxValueBytes) parts.push('"sha256":"' + (await blobSha256(blob)) + '"');
    parts.push('"size":' + blob.size);
    if (blob.size > maxValueBytes) parts.push('"truncated":true');
    parts.push('"type":' + stringify(blob.type));
    return '{"$blob":{' + parts.join(",") + "}}";
  }

  function blobEstimate(blob, maxValueBytes) {
    return blob.size <= maxValueBytes ? Math.ceil(blob.size / 3) * 4 + 100 : 200;
  }

  // Connections -------------------------------------------------------------------------------

  const connections = new Map(); // name -> Promise<IDBDatabase>
  const lostConnections = new Map(); // name -> why our connection was closed under us

  function errorText(e) {
    if (e === null || e === undefined) return "unknown error";
    if (typeof e === "object" && "name" in e && "message" in e) {
      if (!e.message) return String(e.name);
      // A plain Error is one of ours, whose message says it all; DOMExceptions need their name.
      return e.name === "Error" ? String(e.message) : e.name + ": " + e.message;
    }
    return String(e);
  }

  function openDatabase(name, timeoutMs) {
    let opening = connections.get(name);
    if (opening !== undefined) return opening;
    opening = new Promise((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        settled = true;
        reject(
          new Error(
            `could not be opened within ${timeoutMs / 1000}s ` +
              "(blocked: a version change of it is waiting for other connections to close?)",
          ),
        );
      }, timeoutMs);
      let request;
      try {
        request = indexedDB.open(name); // no version: never an upgrade
      } catch (e) {
        clearTimeout(timer);
        reject(e);
        return;
      }
      request.onupgradeneeded = () => {
        // Only a database that no longer exists is upgraded from nothing: never create one.
        request.transaction.abort();
      };
      request.onsuccess = () => {
        const db = request.result;
        if (settled) {
          db.close(); // it opened after we gave up on it
          return;
        }
        settled = true;
        clearTimeout(timer);
        db.onversionchange = () => {
          // Let the page upgrade or delete its database; reads of it then stop with a problem.
          db.close();
          connections.delete(name);
          lostConnections.set(name, "the page upgraded or deleted the database while it was read");
        };
        db.onclose = () => {
          connections.delete(name);
          lostConnections.set(name, "the browser closed the database connection");
        };
        resolve(db);
      };
      request.onerror = () => {
        clearTimeout(timer);
        if (settled) return;
        settled = true;
        const e = request.error;
        reject(
          e && e.name === "AbortError" ? new Error("the database no longer exists") : e,
        );
      };
    });
    opening.catch(() => {}); // failures are reported by whoever awaits it
    connections.set(name, opening);
    return opening;
  }

  async function database(name, timeoutMs) {
    if (lostConnections.has(name)) throw new Error(lostConnections.get(name));
    return openDatabase(name, timeoutMs);
  }

  function request(req) {
    return new Promise((resolve, reject) => {
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }

  // Schema ------------------------------------------------------------------------------------

  async function databases() {
    const list = await indexedDB.databases();
    return stringify(list.map((d) => ({ name: d.name, version: d.version })));
  }

  const keyPathOf = (kp) => (kp === null || typeof kp === "string" ? kp : Array.from(kp));

  async function describe(name, timeoutMs) {
    try {
      const db = await database(name, timeoutMs);
      const names = Array.from(db.objectStoreNames);
      const stores = [];
      if (names.length) {
        const tx = db.transaction(names, "readonly");
        for (const storeName of names) {
          const store = tx.objectStore(storeName);
          const indexes = Array.from(store.indexNames, (indexName) => {
            const index = store.index(indexName);
            return {
              name: indexName,
              keyPath: keyPathOf(index.keyPath),
              unique: index.unique,
              multiEntry: index.multiEntry,
            };
          });
          stores.push({
            name: storeName,
            keyPath: keyPathOf(store.keyPath),
            autoIncrement: store.autoIncrement,
            indexes,
          });
        }
      }
      return { name, version: db.version, stores };
    } catch (e) {
      return { name, error: errorText(e) };
    }
  }

  async function schema(names, timeoutMs) {
    return stringify(await Promise.all(names.map((name) => describe(name, timeoutMs))));
  }

  async function count(db, store, timeoutMs) {
    try {
      const conn = await database(db, timeoutMs);
      return { count: await request(conn.transaction(store, "readonly").objectStore(store).count()) };
    } catch (e) {
      return { error: errorText(e) };
    }
  }

  async function counts(pairs, timeoutMs) {
    return stringify(await Promise.all(pairs.map(([db, store]) => count(db, store, timeoutMs))));
  }

  // Reading a store ---------------------------------------------------------------------------

  const reads = new Map();
  let nextReadId = 1;
  const FIRST_COUNT = 500; // the first batch probes record sizes before full batches are asked

  function begin(db, store, options) {
    // Stores are read one after another: a finished read's held values are no longer wanted.
    for (const [id, st] of reads) if (st.finished && st.pending === null) reads.delete(id);
    const id = nextReadId++;
    reads.set(id, {
      db,
      store,
      o: options,
      started: false, // false: nothing read yet, so no lower bound (lastKey may be 0 or '')
      lastKey: undefined,
      count: Math.min(options.batchSize, FIRST_COUNT),
      remaining: options.maxRecords ?? Infinity,
      finished: false,
      pending: null,
      snapshot: null,
      seq: 0, // the number of the next batch
      held: new Map(), // hash-first: batch number -> its value texts
      compress: options.compress,
    });
    return id;
  }

  // The key IndexedDB makes of a value found at a key path: views become ArrayBuffers (binary
  // keys), arrays are converted member by member; numbers, strings and Dates stay as they are.
  function toKey(v) {
    if (isView(v)) return v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength);
    return isArray(v) ? v.map(toKey) : v;
  }

  function atPath(value, path) {
    if (path === "") return value;
    let v = value;
    for (const name of path.split(".")) v = v[name];
    return v;
  }

  function keyOf(value, keyPath) {
    if (typeof keyPath === "string") return toKey(atPath(value, keyPath));
    return keyPath.map((path) => toKey(atPath(value, path)));
  }

  // One readonly transaction: up to `n` records after the last key (all when n is undefined).
  async function fetchRecords(st, n) {
    const conn = await database(st.db, st.o.openTimeoutMs);
    const store = conn.transaction(st.store, "readonly").objectStore(st.store);
    const range = st.started ? IDBKeyRange.lowerBound(st.lastKey, true) : null;
    const keyPath = store.keyPath;
    if (keyPath !== null) {
      // In-line keys are in the values: reading them apart costs the page a fifth more.
      const values = await request(store.getAll(range, n));
      return { keys: values.map((v) => keyOf(v, keyPath)), values };
    }
    if (hasGetAllRecords) {
      const records = await request(store.getAllRecords({ query: range, count: n }));
      return { keys: records.map((r) => r.key), values: records.map((r) => r.value) };
    }
    const [keys, values] = await Promise.all([
      request(store.getAllKeys(range, n)),
      request(store.getAll(range, n)),
    ]);
    return { keys, values };
  }

  async function fetchKey(st) {
    const conn = await database(st.db, st.o.openTimeoutMs);
    const store = conn.transaction(st.store, "readonly").objectStore(st.store);
    const range = st.started ? IDBKeyRange.lowerBound(st.lastKey, true) : null;
    const keys = await request(store.getAllKeys(range, 1));
    return keys.length ? { key: keys[0] } : null;
  }

  // Encodes records [from, from+limit) until the byte bound; returns the texts and problems.
  async function encodeRecords(st, keys, values, from, limit) {
    const texts = [];
    const problems = [];
    const waiting = []; // [record index in texts, blob list]
    let bytes = 0;
    let taken = 0;
    for (let i = from; i < from + limit; i++) {
      if (blobs.length) blobs = []; // the last list is kept in `waiting`
      notes.length = 0;
      const keyText = encodeRoot(keys[i]);
      const valueText = encodeRoot(values[i]);
      let size = keyText.length + valueText.length;
      for (let b = 0; b < blobs.length; b++) size += blobEstimate(blobs[b][0], st.o.maxValueBytes);
      if (taken > 0 && bytes + size > st.o.maxBatchBytes) break;
      bytes += size;
      taken++;
      texts.push(keyText, valueText);
      for (let n = 0; n < notes.length; n++) {
        problems.push({ key: keyText, message: (notes[n][0] || "value") + ": " + notes[n][1] });
      }
      if (blobs.length) waiting.push([texts.length - 1, blobs, keyText]);
    }
    blobs = [];
    notes = [];
    // Blob bytes are read after the transaction, which cannot stay open across awaits.
    for (const [index, list, keyText] of waiting) {
      const filled = await Promise.all(
        list.map(async ([blob, where]) => {
          try {
            return await blobText(blob, st.o.maxValueBytes);
          } catch (e) {
            const reason = "blob bytes could not be read: " + errorText(e);
            problems.push({ key: keyText, message: (where || "value") + ": " + reason });
            return opaque(toTag(blob), reason, null, null, { size: blob.size, type: blob.type });
          }
        }),
      );
      texts[index] = texts[index].replace(/\u0000(\d+)\u0000/g, (_, n) => filled[Number(n)]);
    }
    return { texts, problems, bytes, taken };
  }

  function batchText(header, texts) {
    header.n = texts.length / 2;
    const head = stringify(header);
    return texts.length ? head + "\n" + texts.join("\n") : head;
  }

  function nextCount(st, bytes, taken, cut) {
    if (cut) return Math.max(1, taken);
    const perRecord = Math.max(1, bytes / Math.max(1, taken));
    const fits = Math.max(1, Math.floor(st.o.maxBatchBytes / perRecord));
    return Math.max(1, Math.min(st.o.batchSize, fits, st.count * 4));
  }

  async function batched(st) {
    const problems = [];
    let skipped = 0;
    for (;;) {
      const limit = st.remaining < st.count ? st.remaining + 1 : st.count;
      let got;
      try {
        got = await fetchRecords(st, limit);
      } catch (e) {
        if (limit > 1) {
          // Find the record that cannot be read by halving; the others are still read.
          st.count = Math.max(1, Math.floor(limit / 2));
          continue;
        }
        let found;
        try {
          found = await fetchKey(st);
        } catch {
          found = null;
        }
        if (found === null) {
          st.finished = true;
          return { header: { done: true, fatal: errorText(e), problems, skipped }, texts: [] };
        }
        st.lastKey = found.key;
        st.started = true;
        skipped++;
        problems.push({ key: encodeRoot(found.key), message: "could not be read: " + errorText(e) });
        continue;
      }
      const deliverable = Math.min(got.keys.length, st.remaining);
      const out = await encodeRecords(st, got.keys, got.values, 0, deliverable);
      problems.push(...out.problems);
      if (out.taken) {
        st.lastKey = got.keys[out.taken - 1];
        st.started = true;
      }
      st.remaining -= out.taken;
      const cut = out.taken < deliverable;
      const truncated = !cut && got.keys.length > deliverable;
      const done = !cut && (truncated || got.keys.length < limit);
      st.count = nextCount(st, out.bytes, out.taken, cut);
      st.finished = done;
      return { header: { done, problems, skipped, truncated }, texts: out.texts };
    }
  }

  async function snapshot(st) {
    if (st.snapshot === null) {
      const n = st.remaining === Infinity ? undefined : st.remaining + 1;
      try {
        const got = await fetchRecords(st, n);
        st.snapshot = { keys: got.keys, values: got.values, pos: 0 };
      } catch (e) {
        st.finished = true;
        return { header: { done: true, fatal: errorText(e), problems: [] }, texts: [] };
      }
    }
    const snap = st.snapshot;
    const available = Math.min(snap.keys.length, st.remaining);
    const limit = Math.min(st.o.batchSize, available - snap.pos);
    const out = await encodeRecords(st, snap.keys, snap.values, snap.pos, limit);
    for (let i = snap.pos; i < snap.pos + out.taken; i++) {
      snap.keys[i] = snap.values[i] = undefined; // handed out: let it go
    }
    snap.pos += out.taken;
    const done = snap.pos >= available;
    const truncated = done && snap.keys.length > available;
    st.finished = done;
    if (done) st.snapshot = { keys: [], values: [], pos: 0 };
    return { header: { done, problems: out.problems, truncated }, texts: out.texts };
  }

  // A hash-first read sends each value's hash in place of its text; the texts wait here, by
  // batch number, until Python asks for those it lacks (`values`). Python may hold batch k
  // while the page already made k+1 and k+2 (both sides read ahead), so three are kept.
  function hashed(st, header, texts) {
    const values = [];
    let bytes = 0;
    for (let i = 1; i < texts.length; i += 2) {
      const { hash, bytes: n } = textSha256(texts[i]);
      values.push(texts[i]);
      texts[i] = hash;
      bytes += n;
    }
    header.seq = st.seq;
    header.valueBytes = bytes;
    st.held.set(st.seq, values);
    st.held.delete(st.seq - 3);
  }

  // Batches go over CDP as one string, which Chromium's browser process and Playwright's driver
  // relay at a cost per byte: deflated and in base64 they are a fraction of it. Text that does
  // not shrink (already compressed blobs) stops the compression for the rest of the read.
  const COMPRESS_FROM = 32 * 1024;
  async function packed(st, text) {
    if (!st.compress || text.length < COMPRESS_FROM) return text;
    const deflated = new Blob([text]).stream().pipeThrough(new CompressionStream("deflate-raw"));
    const bytes = new Uint8Array(await new Response(deflated).arrayBuffer());
    if (bytes.length * 2 > text.length) st.compress = false;
    return "~" + base64(bytes);
  }

  async function produce(st) {
    let text;
    try {
      const { header, texts } = await (st.o.consistency === "snapshot" ? snapshot(st) : batched(st));
      if (st.o.hashFirst) hashed(st, header, texts);
      text = batchText(header, texts);
    } catch (e) {
      st.finished = true;
      return batchText({ done: true, fatal: errorText(e), problems: [] }, []);
    } finally {
      st.seq++;
    }
    return packed(st, text);
  }

  async function next(id) {
    const st = reads.get(id);
    if (st === undefined) throw new Error("no read " + id);
    const current = st.pending ?? produce(st);
    st.pending = null;
    const text = await current;
    // Prefetch: read the next batch while Python takes this one.
    if (!st.finished && reads.has(id)) st.pending = produce(st);
    else if (!st.held.size) reads.delete(id);
    return text;
  }

  // The value texts at `positions` of hash-first batch `seq`, joined by "\n"; `plain`: send
  // values, not hashes, from the next batch made on.
  async function values(id, seq, positions, plain) {
    const st = reads.get(id);
    const held = st?.held.get(seq);
    if (held === undefined) throw new Error("batch " + seq + " of read " + id + " is not held");
    if (plain) st.o.hashFirst = false;
    return packed(st, positions.map((i) => held[i]).join("\n"));
  }

  async function close() {
    reads.clear();
    const open = Array.from(connections.values());
    connections.clear();
    for (const opening of open) {
      try {
        (await opening).close();
      } catch {
        // never opened: nothing to close
      }
    }
    return true;
  }

  globalThis.__idbHarvester = { databases, schema, counts, begin, next, values, close };
})();
