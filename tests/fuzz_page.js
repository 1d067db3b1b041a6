// The fuzzing page's decoder: typed JSON (docs/typed-json.md) back into real JavaScript values,
// the reverse of the reader's encoder, so that records generated in Python can be stored by the
// page and read back by the real reader.
//
// Written apart from harvester/reader.js on purpose: a shared mistake would cancel out.
"use strict";

const escapeSegment = (s) => String(s).replaceAll("~", "~0").replaceAll("/", "~1");
const fromBase64 = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const ERRORS = { Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError };
const NUMBERS = { NaN: NaN, Infinity: Infinity, "-Infinity": -Infinity, "-0": -0 };

// A plain assignment of "__proto__" would set the prototype, and of an index on an array could
// hit a setter: define every member instead.
function define(o, k, v) {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

// Canonical text sorts members by UTF-16 code units, and a `$ref` points to the first
// occurrence in text order. JSON.parse puts integer-like names first, so walk the names sorted
// again: that is the text's order, and every reference target is made before it is met.
const members = (o) => Object.keys(o).sort();

function decode(node, path, refs) {
  if (node === null || typeof node !== "object") return node;
  if (Array.isArray(node)) {
    const out = [];
    refs.set(path, out);
    node.forEach((x, i) => out.push(decode(x, path + "/" + i, refs)));
    return out;
  }
  const names = Object.keys(node);
  if (names.length !== 1 || names[0][0] !== "$") {
    const o = {};
    refs.set(path, o);
    for (const k of members(node)) define(o, k, decode(node[k], path + "/" + escapeSegment(k), refs));
    return o;
  }
  const name = names[0];
  const p = node[name];
  const inner = path + "/" + escapeSegment(name);
  switch (name) {
    case "$undefined":
      return undefined;
    case "$number":
      return NUMBERS[p];
    case "$bigint":
      return BigInt(p);
    case "$date":
      return new Date(p === null ? NaN : p);
    case "$regexp":
      return new RegExp(p.source, p.flags);
    case "$bytes":
      return fromBase64(p).buffer;
    case "$typed": {
      const buffer = fromBase64(p.bytes).buffer;
      return p.type === "DataView" ? new DataView(buffer) : new globalThis[p.type](buffer);
    }
    case "$blob":
      return "name" in p
        ? new File([fromBase64(p.bytes)], p.name, { type: p.type, lastModified: p.lastModified })
        : new Blob([fromBase64(p.bytes)], { type: p.type });
    case "$error":
      return new ERRORS[p.name](p.message);
    case "$boxed":
      return Object(decode(p, inner, refs));
    case "$ref":
      if (!refs.has(p)) throw new Error("$ref to nothing made yet: " + p);
      return refs.get(p);
    case "$object": {
      const o = {};
      refs.set(path, o);
      for (const k of members(p)) define(o, k, decode(p[k], inner + "/" + escapeSegment(k), refs));
      return o;
    }
    case "$map": {
      const m = new Map();
      refs.set(path, m);
      p.forEach(([k, v], i) => m.set(decode(k, `${inner}/${i}/0`, refs), decode(v, `${inner}/${i}/1`, refs)));
      return m;
    }
    case "$set": {
      const s = new Set();
      refs.set(path, s);
      p.forEach((v, i) => s.add(decode(v, `${inner}/${i}`, refs)));
      return s;
    }
    case "$array": {
      const a = new Array(p.length);
      refs.set(path, a);
      for (const k of members(p.items)) {
        define(a, k, decode(p.items[k], `${inner}/items/${escapeSegment(k)}`, refs));
      }
      return a;
    }
  }
  throw new Error("no such marker: " + name);
}

const decodeText = (text) => decode(JSON.parse(text), "", new Map());

// Replaces the records of the store "s" of the database "fuzz" by [keyText, valueText] pairs, in
// one transaction (one database for every example: creating and deleting databases is slow).
// Resolves to null, or to the first record that could not be stored and why.
let opened = null;

function fuzzDb() {
  opened ??= new Promise((resolve, reject) => {
    const open = indexedDB.open("fuzz", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("s");
    open.onerror = () => reject(open.error);
    open.onsuccess = () => resolve(open.result);
  });
  return opened;
}

window.fuzzWrite = async (pairs) => {
  const db = await fuzzDb();
  return new Promise((resolve) => {
    const tx = db.transaction("s", "readwrite");
    const store = tx.objectStore("s");
    store.clear();
    let failed = null;
    for (const [key, value] of pairs) {
      try {
        store.put(decodeText(value), decodeText(key));
      } catch (e) {
        failed = { key, value, error: String(e) };
        break;
      }
    }
    if (failed !== null) tx.abort();
    tx.oncomplete = () => resolve(null);
    tx.onabort = () => resolve(failed ?? { error: String(tx.error) });
  });
};

window.ready = true;
