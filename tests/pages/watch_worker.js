// The dedicated worker of watch.html: one write, then "ok" (or the error's message).
onmessage = (e) => {
  const { dbName, store, entries } = e.data;
  const open = indexedDB.open(dbName);
  open.onerror = () => postMessage(String(open.error));
  open.onsuccess = () => {
    const db = open.result;
    const tx = db.transaction(store, "readwrite");
    for (const [k, v] of entries) tx.objectStore(store).put(v, k);
    tx.oncomplete = () => { db.close(); postMessage("ok"); };
    tx.onerror = () => postMessage(String(tx.error));
  };
};
