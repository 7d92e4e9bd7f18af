"use strict";
// The photo page: outlines on the original, masks to add (drag, or four corner clicks) and to remove.
(function () {
  const data = JSON.parse(document.getElementById("photo-data").textContent);
  const photo = data.photo;
  const canvas = document.getElementById("canvas");
  const context = canvas.getContext("2d");
  const list = document.getElementById("masks");
  const statusLine = document.getElementById("status");
  const addButton = document.getElementById("add");
  const colours = {model: "#3cc83c", zoomed_out: "#00c8c8", closer_look: "#00a0ff", second_look: "#e62828", manual: "#d53f8c"};
  const removed = new Set();
  const added = [];  // each {box: [x1, y1, x2, y2]} or {corners: [[x, y] x4]}, photo pixels
  let corners = [];  // corner clicks of the mask being added
  let adding = false;
  let dragFrom = null;
  let dragTo = null;
  const image = new Image();

  function toPhoto(event) {
    const rect = canvas.getBoundingClientRect();
    return [Math.round((event.clientX - rect.left) * canvas.width / rect.width),
            Math.round((event.clientY - rect.top) * canvas.height / rect.height)];
  }

  function outline(mask, colour, dashed) {
    const width = Math.max(2, canvas.width / 400);
    context.lineWidth = width;
    context.strokeStyle = colour;
    context.setLineDash(dashed ? [width * 3, width * 2] : []);
    const points = mask.corners || [[mask.box[0], mask.box[1]], [mask.box[2], mask.box[1]],
                                    [mask.box[2], mask.box[3]], [mask.box[0], mask.box[3]]];
    context.beginPath();
    points.forEach(([x, y], n) => (n ? context.lineTo(x, y) : context.moveTo(x, y)));
    context.closePath();
    context.stroke();
    return points;
  }

  function label(text, [x, y], colour) {
    const size = Math.max(14, canvas.width / 60);
    context.font = `${size}px sans-serif`;
    const top = Math.max(size, y - 4);
    context.fillStyle = "rgba(0, 0, 0, 0.6)";
    context.fillRect(x, top - size, context.measureText(text).width + 6, size + 4);
    context.fillStyle = colour;
    context.fillText(text, x + 3, top);
  }

  function draw() {
    context.drawImage(image, 0, 0);
    photo.masks.forEach((mask, index) => {
      const gone = removed.has(index);
      const colour = gone ? "#a0aec0" : colours[mask.source] || "#ff00ff";
      const points = outline(mask, colour, gone);
      label(`${index}: ${mask.source.replace("_", " ")} ${Number(mask.conf).toFixed(2)}${gone ? " (remove)" : ""}`,
            points[0], colour);
    });
    photo.candidates.forEach((mark) => {
      const points = outline(mark, "#ffd700", true);
      label(`not masked ${Number(mark.conf).toFixed(2)}`, points[0], "#ffd700");
    });
    added.forEach((mask) => label("new", outline(mask, colours.manual, false)[0], colours.manual));
    if (dragFrom && dragTo) {
      outline({box: [dragFrom[0], dragFrom[1], dragTo[0], dragTo[1]]}, colours.manual, true);
    }
    corners.forEach(([x, y]) => {
      context.fillStyle = colours.manual;
      context.beginPath();
      context.arc(x, y, Math.max(4, canvas.width / 200), 0, 2 * Math.PI);
      context.fill();
    });
  }

  function button(text, onClick) {
    const element = document.createElement("button");
    element.type = "button";
    element.textContent = text;
    element.addEventListener("click", onClick);
    return element;
  }

  function describe(mask) {
    return mask.corners ? `corners ${JSON.stringify(mask.corners)}` : `box ${JSON.stringify(mask.box)}`;
  }

  function render() {
    list.replaceChildren();
    photo.masks.forEach((mask, index) => {
      const item = document.createElement("li");
      const text = document.createElement("span");
      text.textContent = `${mask.source} ${Number(mask.conf).toFixed(2)}, ${describe(mask)} `;
      item.append(text, button(removed.has(index) ? "Keep" : "Remove", () => {
        removed.has(index) ? removed.delete(index) : removed.add(index);
        render();
      }));
      item.className = removed.has(index) ? "removed" : "";
      list.append(item);
    });
    photo.candidates.forEach((mark) => {
      const item = document.createElement("li");
      item.textContent = `not masked ${Number(mark.conf).toFixed(2)}, ${describe(mark)} `;
      item.append(button("Mask it", () => { added.push({box: mark.box}); render(); }));
      list.append(item);
    });
    added.forEach((mask, index) => {
      const item = document.createElement("li");
      item.textContent = `new mask, ${describe(mask)} `;
      item.append(button("Undo", () => { added.splice(index, 1); render(); }));
      list.append(item);
    });
    if (image.complete && image.naturalWidth) draw();
  }

  function setAdding(on) {
    adding = on;
    corners = [];
    dragFrom = dragTo = null;
    canvas.classList.toggle("adding", on);
    addButton.classList.toggle("active", on);
    render();
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (!adding) return;
    dragFrom = toPhoto(event);
    dragTo = null;
  });
  canvas.addEventListener("pointermove", (event) => {
    if (adding && dragFrom && event.buttons) { dragTo = toPhoto(event); draw(); }
  });
  canvas.addEventListener("pointerup", (event) => {
    if (!adding || !dragFrom) return;
    const to = toPhoto(event);
    const moved = Math.hypot(to[0] - dragFrom[0], to[1] - dragFrom[1]) * canvas.getBoundingClientRect().width / canvas.width;
    if (moved > 5) {  // a drag: a rectangle
      added.push({box: [Math.min(dragFrom[0], to[0]), Math.min(dragFrom[1], to[1]),
                        Math.max(dragFrom[0], to[0]), Math.max(dragFrom[1], to[1])]});
      setAdding(false);
      return;
    }
    corners.push(to);  // a click: one corner
    dragFrom = dragTo = null;
    if (corners.length === 4) {
      added.push({corners: corners});
      setAdding(false);
    } else {
      draw();
    }
  });
  addButton.addEventListener("click", () => setAdding(!adding));

  async function send(approve) {
    const body = {add: added.map((m) => m.corners || m.box), remove: [...removed].sort((a, b) => a - b),
                  approve: approve, revision: photo.revision};
    statusLine.className = "";
    statusLine.textContent = "Saving …";
    const response = await fetch(data.save, {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
    if (response.ok) {
      statusLine.className = "ok";
      statusLine.textContent = "Saved.";
      window.location.reload();
      return;
    }
    let detail = response.statusText;
    try { detail = (await response.json()).detail; } catch (error) { /* not JSON: keep the status text */ }
    statusLine.className = "error";
    statusLine.textContent = `Not saved (${response.status}): ${typeof detail === "string" ? detail : JSON.stringify(detail)}` +
      (response.status === 409 ? " Reload the page to see the other change." : "");
  }
  document.getElementById("save").addEventListener("click", () => send(false));
  document.getElementById("approve").addEventListener("click", () => send(true));

  image.addEventListener("load", () => {
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    render();
  });
  image.src = data.original;
})();
