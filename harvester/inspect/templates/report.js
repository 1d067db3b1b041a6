// Record-table filter: rows whose text does not contain the query (case-insensitive) are hidden.
for (const input of document.querySelectorAll("input.filter")) {
  const table = document.getElementById(input.dataset.table);
  const count = document.getElementById(input.dataset.count);
  const rows = Array.from(table.tBodies[0].rows);
  const texts = rows.map((row) => row.textContent.toLowerCase());
  input.addEventListener("input", () => {
    const query = input.value.trim().toLowerCase();
    let shown = 0;
    rows.forEach((row, i) => {
      const hit = query === "" || texts[i].includes(query);
      row.hidden = !hit;
      if (hit) shown += 1;
    });
    count.textContent = query === "" ? "" : shown + " of " + rows.length + " shown";
  });
}
