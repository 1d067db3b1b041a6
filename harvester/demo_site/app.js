/*
 * "Orders and notes": the idb-harvester demo app. Everything it has lives in IndexedDB, and each
 * load writes to it, so that successive harvests of one browser profile show a changelog.
 *
 * The data is deterministic: a seeded PRNG and fixed dates, never Math.random or Date.now, so a
 * fresh profile always starts from the same records and every reload changes the same ones. The
 * only exception is the CryptoKey, which is random but non-extractable (harvested as opaque).
 *
 * Databases, all at version 1:
 *   shop   orders       in-line key path "id"; indexes by_number (unique), by_customer, by_status,
 *                       by_tags (multiEntry), by_created (Date keys)
 *          order_lines  compound key path ["orderId", "line"]; index by_sku
 *          customers    out-of-line keys "cust-0001"…; index by_email (unique)
 *          events       out-of-line auto-increment keys; index by_type
 *          drafts       in-line key path "id"; always empty
 *          meta         out-of-line keys; "generation" holds the number of the load (0 = first)
 *   notes  notes        in-line auto-increment key path "id"; indexes by_tags (multiEntry),
 *                       by_updated
 *          attachments  out-of-line array keys [noteId, fileName]; File, Blob, ArrayBuffer values
 *   lab    values       out-of-line keys naming a value type: every case of the typed-JSON table
 *          keys         out-of-line keys of every kind: 0, '', -Infinity, strings (a lone
 *                       surrogate), Date, ArrayBuffer, arrays
 *   empty  no stores at all
 *
 * Generation 0, the first load on a fresh profile, creates (inside each database's upgrade
 * transaction, so a half-seeded database cannot exist):
 *   shop: orders 2500 (ids 1..2500), order_lines 5000 (lines 1 and 2 of each order),
 *         customers 300, events 1500 (keys 1..1500), drafts 0, meta 1
 *   notes: notes 640 (ids 1..640), attachments 12
 *   lab: values 57, keys 16
 *
 * Generation g >= 1, each later load, makes the same numbers of changes whatever g is:
 *   shop/orders       +I 5  ids 2500+5(g-1)+1 .. 2500+5g
 *                     +U 3  ids 1000+3(g-1) .. 1000+3(g-1)+2: status advances, revision = g,
 *                           tag "rev-g" added
 *                     -D 2  ids 2g-1 and 2g
 *   shop/order_lines  +I 10 lines 1 and 2 of each new order
 *                     +U 3  line 1 of each updated order: qty + 1
 *                     -D 4  both lines of each deleted order
 *   shop/customers    +U 1  "cust-NNNN", NNNN = (g-1) mod 300 + 1: visits = g
 *   shop/events       +I 1  auto key 1500+g: {type: "reload", generation: g}
 *   shop/meta         +U 1  "generation" = g
 *   notes/notes       +I 1  id 640+g
 *                     +U 1  id g: title, body and updatedAt rewritten for g
 *   lab/values        +U 1  "bigint-counter" = g * 10^20 (a BigInt)
 * and nothing else. The ids touched never collide: deleted ids stay below 2g+1, updated ones are
 * at least 1000+3(g-1), and every one of them exists when it is touched. expected.json (next to
 * this file) holds these numbers for tests.
 *
 * A load applies notes, then lab, then shop, whose transaction also bumps the generation. The
 * notes and lab changes are plain puts of values computed from g, so a load interrupted before
 * the shop commit is redone by the next load without counting twice.
 *
 * The "Mark next order paid" button writes only when clicked (so a harvest nobody clicked in
 * reads exactly the above): it sets status "paid" on the pending order of the lowest id and
 * changes nothing else, a single +U in shop/orders for `harvester watch --click`. The reload
 * counts above still hold after clicks: a reload's update of a paid order is still an update.
 */
"use strict";

const ORDERS = 2500;
const CUSTOMERS = 300;
const EVENTS = 1500;
const NOTES = 640;
const STATUSES = ["pending", "paid", "shipped", "delivered", "cancelled"];
const TAGS = ["gift", "express", "fragile", "bulk", "repeat", "b2b", "sale"];
const NOTE_TAGS = ["todo", "idea", "call", "follow-up", "invoice", "personal"];
const HOUR = 3600 * 1000;
const DAY = 24 * HOUR;
// Fixed dates, never the clock: 2026-01-01T00:00:00Z.
const EPOCH = Date.UTC(2026, 0, 1);

/** mulberry32: a tiny seeded PRNG, so the data is the same in every fresh profile. */
function prng(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pick = (rand, list) => list[Math.floor(rand() * list.length)];
const customerKey = (n) => "cust-" + String(n).padStart(4, "0");

function pickTags(rand, list, max) {
  const tags = [];
  const wanted = Math.floor(rand() * (max + 1));
  while (tags.length < wanted) {
    const tag = pick(rand, list);
    if (!tags.includes(tag)) tags.push(tag);
  }
  return tags;
}

function makeOrder(id, rand) {
  const order = {
    id,
    number: "ORD-" + String(id).padStart(6, "0"),
    customerId: customerKey(1 + Math.floor(rand() * CUSTOMERS)),
    status: pick(rand, STATUSES),
    tags: pickTags(rand, TAGS, 3),
    total: Math.round(rand() * 5000000) / 100,
    currency: "EUR",
    createdAt: new Date(EPOCH + id * HOUR),
    revision: 0,
  };
  // Some orders carry an explicit undefined, as apps often do.
  order.comment = rand() < 0.1 ? undefined : "deliver to reception";
  return order;
}

function makeLine(orderId, line, rand) {
  return {
    orderId,
    line,
    sku: "SKU-" + String(1 + Math.floor(rand() * 400)).padStart(4, "0"),
    qty: 1 + Math.floor(rand() * 9),
    price: Math.round(rand() * 20000) / 100,
  };
}

function makeNote(id, rand) {
  return {
    title: `Note ${id}`,
    body: `Call back about order ORD-${String(1 + Math.floor(rand() * ORDERS)).padStart(6, "0")} ✓`,
    tags: pickTags(rand, NOTE_TAGS, 3),
    pinned: rand() < 0.05,
    updatedAt: new Date(EPOCH + id * DAY),
  };
}

function bytes(...values) {
  return Uint8Array.from(values).buffer;
}

/** One record per case of the typed-JSON table in the design, plus a few mixtures. */
function labValues(cryptoKey) {
  const cycle = { name: "loop" };
  cycle.self = cycle;
  const shared = { x: 1 };
  const sparse = [1, , 3]; // the hole is the point
  sparse.length = 5;
  const withProps = ["a", "b"];
  withProps.label = "extra";
  const buffer = bytes(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  return [
    ["null", null],
    ["true", true],
    ["false", false],
    ["number", 3.5],
    ["string", "plain text"],
    ["empty-string", ""],
    ["unicode", "naïve café 🍰 日本語"],
    ["lone-surrogate-high", "\uD800"],
    ["lone-surrogate-mixed", "a\uDC00b\uD83D"],
    ["array", [1, "two", [3]]],
    ["object", { a: 1, b: { c: [true, null] } }],
    ["empty-object", {}],
    ["empty-array", []],
    ["undefined", undefined],
    ["object-with-undefined", { present: 1, missing: undefined }],
    ["nan", NaN],
    ["infinity", Infinity],
    ["-infinity", -Infinity],
    ["negative-zero", -0],
    ["bigint", 12345678901234567890n],
    ["bigint-negative", -(2n ** 70n)],
    ["bigint-counter", 0n],
    ["date", new Date(Date.UTC(1999, 11, 31, 23, 59, 59, 999))],
    ["date-invalid", new Date(NaN)],
    ["regexp", /ab+c/gi],
    ["regexp-unicode", /\p{L}+$/u],
    ["map", new Map([[{ sku: "A" }, 1], [[1, 2], "array key"], ["plain", new Date(0)]])],
    ["set", new Set([1, "two", { three: 3 }, 1n])],
    ["arraybuffer", buffer],
    ["arraybuffer-empty", new ArrayBuffer(0)],
    ["int8array", Int8Array.from([-128, 0, 127])],
    ["uint8array", new Uint8Array(buffer, 4, 8)],
    ["uint8clampedarray", Uint8ClampedArray.from([0, 128, 255])],
    ["int16array", Int16Array.from([-32768, 32767])],
    ["uint16array", Uint16Array.from([0, 65535])],
    ["int32array", Int32Array.from([-2147483648, 2147483647])],
    ["uint32array", Uint32Array.from([0, 4294967295])],
    ["float32array", Float32Array.from([1.5, -0, NaN])],
    ["float64array", Float64Array.from([Math.PI, -Infinity])],
    ["bigint64array", BigInt64Array.from([-(2n ** 63n), 2n ** 63n - 1n])],
    ["biguint64array", BigUint64Array.from([0n, 2n ** 64n - 1n])],
    ["dataview", new DataView(buffer, 2, 4)],
    ["blob", new Blob(["hello blob"], { type: "text/plain" })],
    ["blob-binary", new Blob([bytes(0, 255, 128)], { type: "application/octet-stream" })],
    [
      "file",
      new File(["file body\n"], "notes.txt", { type: "text/plain", lastModified: 946684799999 }),
    ],
    ["sparse-array", sparse],
    ["array-with-props", withProps],
    ["boxed-number", new Number(42)],
    ["boxed-string", new String("boxed")],
    ["boxed-boolean", new Boolean(false)],
    ["boxed-bigint", Object(7n)],
    ["error", new TypeError("bad type")],
    ["cycle", cycle],
    ["shared", { a: shared, b: shared, list: [shared, shared] }],
    ["cryptokey", { label: "session key", key: cryptoKey }],
    ["dollar-keys", { $date: "not a date", $: 1, plain: true }],
    [
      "kitchen-sink",
      { when: new Date(EPOCH), big: 1n, nan: NaN, tags: new Set(["x"]), raw: bytes(1, 2) },
    ],
  ];
}

/** Keys of every kind IndexedDB accepts, with the falsy ones that catch `if (!key)` bugs. */
function labKeys() {
  return [
    [0, "zero"],
    ["", "empty string"],
    [-Infinity, "-Infinity"],
    [-1.5, "negative number"],
    [2 ** 53, "large number"],
    [Infinity, "Infinity"],
    ["a", "string"],
    ["\uDBFF", "lone surrogate"],
    ["zz 🍰", "astral string"],
    [new Date(Date.UTC(2000, 0, 1)), "date"],
    [new Date(-1), "date before 1970"],
    [bytes(), "empty binary"],
    [bytes(1, 2, 3), "binary"],
    [[], "empty array"],
    [[1, "a", new Date(0), bytes(9)], "mixed array"],
    [[[0], [""]], "nested array"],
  ];
}

function seedShop(db, rand) {
  const orders = db.createObjectStore("orders", { keyPath: "id" });
  orders.createIndex("by_number", "number", { unique: true });
  orders.createIndex("by_customer", "customerId");
  orders.createIndex("by_status", "status");
  orders.createIndex("by_tags", "tags", { multiEntry: true });
  orders.createIndex("by_created", "createdAt");
  const lines = db.createObjectStore("order_lines", { keyPath: ["orderId", "line"] });
  lines.createIndex("by_sku", "sku");
  const customers = db.createObjectStore("customers");
  customers.createIndex("by_email", "email", { unique: true });
  const events = db.createObjectStore("events", { autoIncrement: true });
  events.createIndex("by_type", "type");
  db.createObjectStore("drafts", { keyPath: "id" });
  const meta = db.createObjectStore("meta");

  for (let n = 1; n <= CUSTOMERS; n++) {
    customers.put(
      {
        name: `Customer ${n}`,
        email: `customer${n}@example.test`,
        since: new Date(EPOCH - n * DAY),
        vip: rand() < 0.1,
        visits: 0,
        channels: new Set(pickTags(rand, ["email", "sms", "post"], 2)),
      },
      customerKey(n),
    );
  }
  for (let id = 1; id <= ORDERS; id++) {
    orders.put(makeOrder(id, rand));
    lines.put(makeLine(id, 1, rand));
    lines.put(makeLine(id, 2, rand));
  }
  for (let n = 1; n <= EVENTS; n++) {
    events.add({
      type: pick(rand, ["created", "paid", "shipped"]),
      orderId: 1 + Math.floor(rand() * ORDERS),
      at: new Date(EPOCH + n * HOUR),
    });
  }
  meta.put(0, "generation");
}

function seedNotes(db, rand) {
  const notes = db.createObjectStore("notes", { keyPath: "id", autoIncrement: true });
  notes.createIndex("by_tags", "tags", { multiEntry: true });
  notes.createIndex("by_updated", "updatedAt");
  const attachments = db.createObjectStore("attachments");
  for (let id = 1; id <= NOTES; id++) notes.add(makeNote(id, rand));
  for (let n = 1; n <= 4; n++) {
    const noteId = n * 10;
    attachments.put(
      new File([`minutes of meeting ${n}\n`], `minutes-${n}.txt`, {
        type: "text/plain",
        lastModified: EPOCH + n * DAY,
      }),
      [noteId, `minutes-${n}.txt`],
    );
    attachments.put(
      new Blob([bytes(137, 80, 78, 71, n)], { type: "image/png" }),
      [noteId, `sketch-${n}.png`],
    );
    attachments.put(bytes(n, n, n), [noteId, `raw-${n}.bin`]);
  }
}

function seedLab(db, cryptoKey) {
  const values = db.createObjectStore("values");
  const keys = db.createObjectStore("keys");
  for (const [key, value] of labValues(cryptoKey)) values.put(value, key);
  for (const [key, value] of labKeys()) keys.put({ kind: value }, key);
}

/** Open a database, seeding it in its upgrade transaction; `created` says whether it was new. */
function openDatabase(name, seed) {
  return new Promise((resolve, reject) => {
    let created = false;
    const request = indexedDB.open(name, 1);
    request.onupgradeneeded = (event) => {
      created = event.oldVersion === 0;
      seed(request.result);
    };
    request.onsuccess = () => resolve({ db: request.result, created });
    request.onerror = () => reject(request.error);
    request.onblocked = () => reject(new Error(`opening ${name} is blocked by another tab`));
  });
}

/** Run `work(tx)` in a read-write transaction and wait until it has committed. */
function write(db, stores, work) {
  return new Promise((resolve, reject) => {
    const tx = db.transaction(stores, "readwrite", { durability: "strict" });
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error || new Error(`transaction on ${stores} aborted`));
    work(tx);
  });
}

function read(db, store, key) {
  return new Promise((resolve, reject) => {
    const request = db.transaction(store).objectStore(store).get(key);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/** Read-modify-write of one record inside `tx`. */
function update(store, key, change) {
  store.get(key).onsuccess = (event) => {
    const value = event.target.result;
    change(value);
    store.put(value);
  };
}

function changeNotes(db, g) {
  const rand = prng(20000 + g);
  return write(db, ["notes"], (tx) => {
    const notes = tx.objectStore("notes");
    notes.put({ id: NOTES + g, ...makeNote(NOTES + g, rand) });
    notes.put({
      id: g,
      title: `Note ${g} (edited in generation ${g})`,
      body: `Rewritten on reload ${g}.`,
      tags: ["edited"],
      pinned: false,
      updatedAt: new Date(EPOCH + (NOTES + g) * DAY),
    });
  });
}

function changeLab(db, g) {
  return write(db, ["values"], (tx) => {
    tx.objectStore("values").put(BigInt(g) * 10n ** 20n, "bigint-counter");
  });
}

function changeShop(db, g) {
  const rand = prng(10000 + g);
  const stores = ["orders", "order_lines", "customers", "events", "meta"];
  return write(db, stores, (tx) => {
    const orders = tx.objectStore("orders");
    const lines = tx.objectStore("order_lines");
    for (let k = 1; k <= 5; k++) {
      const id = ORDERS + 5 * (g - 1) + k;
      orders.put(makeOrder(id, rand));
      lines.put(makeLine(id, 1, rand));
      lines.put(makeLine(id, 2, rand));
    }
    for (let k = 0; k < 3; k++) {
      const id = 1000 + 3 * (g - 1) + k;
      update(orders, id, (order) => {
        order.status = STATUSES[(STATUSES.indexOf(order.status) + 1) % STATUSES.length];
        order.revision = g;
        order.tags.push(`rev-${g}`);
      });
      update(lines, [id, 1], (line) => {
        line.qty += 1;
      });
    }
    for (const id of [2 * g - 1, 2 * g]) {
      orders.delete(id);
      lines.delete(IDBKeyRange.bound([id, 1], [id, 2]));
    }
    const customers = tx.objectStore("customers");
    const customer = customerKey(((g - 1) % CUSTOMERS) + 1);
    customers.get(customer).onsuccess = (event) => {
      customers.put({ ...event.target.result, visits: g }, customer);
    };
    tx.objectStore("events").add({ type: "reload", generation: g, at: new Date(EPOCH + g * DAY) });
    tx.objectStore("meta").put(g, "generation");
  });
}

function count(db, store) {
  return new Promise((resolve, reject) => {
    const request = db.transaction(store).objectStore(store).count();
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function addRow(body, ...cells) {
  const row = body.insertRow();
  for (const cell of cells) row.insertCell().textContent = String(cell);
  row.cells[2].className = "n";
}

async function summarize(databases, generation) {
  const counts = {};
  const body = document.querySelector("#summary tbody");
  for (const [name, db] of Object.entries(databases)) {
    counts[name] = {};
    const stores = [...db.objectStoreNames];
    if (stores.length === 0) addRow(body, name, "(no stores)", "");
    for (const store of stores) {
      counts[name][store] = await count(db, store);
      addRow(body, name, store, counts[name][store]);
    }
  }
  document.getElementById("summary").hidden = false;
  document.getElementById("status").textContent =
    generation === 0
      ? "Generation 0: the first load created the data. Reload to change it."
      : `Generation ${generation}: this load changed the data (see expected.json).`;
  return { generation, counts };
}

/** Set status "paid" on the first pending order by id; that order, or null when none is left. */
function markNextPaid(db) {
  return new Promise((resolve, reject) => {
    let paid = null;
    const tx = db.transaction("orders", "readwrite", { durability: "strict" });
    tx.oncomplete = () => resolve(paid);
    tx.onabort = () => reject(tx.error || new Error("marking an order paid was aborted"));
    const pending = tx.objectStore("orders").index("by_status");
    // by_status is ordered by status, then by primary key: the first hit is the lowest id.
    pending.openCursor(IDBKeyRange.only("pending")).onsuccess = (event) => {
      const cursor = event.target.result;
      if (!cursor) return;
      paid = { ...cursor.value, status: "paid" };
      cursor.update(paid);
    };
  });
}

function enableMarkPaid() {
  const button = document.getElementById("mark-paid");
  const said = document.getElementById("action");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      // Opened per click: main() closed its connections so that harvests never wait on ours.
      const { db } = await openDatabase("shop", (upgrading) => seedShop(upgrading, prng(1)));
      try {
        const order = await markNextPaid(db);
        said.textContent = order ? `${order.number} is now paid.` : "No pending order is left.";
      } finally {
        db.close();
      }
    } catch (error) {
      said.textContent = `Marking an order paid failed: ${error}`;
    } finally {
      button.disabled = false;
    }
  });
  button.disabled = false;
}

async function main() {
  // Generated before any upgrade transaction, which would commit while this awaited.
  const cryptoKey = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, [
    "encrypt",
    "decrypt",
  ]);
  // One seed per database, so that each seeds the same whichever of them already exist.
  const shop = await openDatabase("shop", (db) => seedShop(db, prng(1)));
  const notes = await openDatabase("notes", (db) => seedNotes(db, prng(2)));
  const lab = await openDatabase("lab", (db) => seedLab(db, cryptoKey));
  const empty = await openDatabase("empty", () => {});
  let generation = 0;
  if (!shop.created) {
    generation = (await read(shop.db, "meta", "generation")) + 1;
    await changeNotes(notes.db, generation);
    await changeLab(lab.db, generation);
    await changeShop(shop.db, generation);
  }
  const databases = { shop: shop.db, notes: notes.db, lab: lab.db, empty: empty.db };
  window.demoSummary = await summarize(databases, generation);
  // Closed so that nothing of ours holds a connection while the harvester reads.
  for (const db of Object.values(databases)) db.close();
  enableMarkPaid();
  window.demoReady = true;
}

main().catch((error) => {
  window.demoError = String(error && error.stack ? error.stack : error);
  const status = document.getElementById("status");
  status.textContent = `The demo failed: ${error}`;
  status.className = "error";
});
