// The try-it page: plain JS over the public HTTP API (GET /model, GET /items,
// POST /recommend with a new user's ratings, GET /similar). No build step, nothing fetched
// from anywhere but this server.
"use strict";

const state = { model: null, ratings: new Map(), titles: new Map(), steps: [] };
const $ = (id) => document.getElementById(id);

function text(tag, value, cls) {
  const el = document.createElement(tag);
  el.textContent = value;
  if (cls) el.className = cls;
  return el;
}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
    throw new Error(`${response.status}: ${detail}`);
  }
  return data;
}

function notice(message, isError) {
  const el = $("notice");
  el.textContent = message;
  el.className = isError ? "notice error" : "notice";
  el.hidden = false;
}

function label(item, title) {
  return title || `item ${item}`;
}

function fmt(value) {
  return Number(value).toFixed(2);
}

// Rating choices on the model's scale: one button per whole step for scales like 1-5 or
// 0-10, else eleven evenly spaced values.
function ratingSteps(low, high) {
  if (Number.isInteger(low) && Number.isInteger(high) && high - low <= 10) {
    const steps = [];
    for (let v = low; v <= high; v += 1) steps.push(v);
    return steps;
  }
  return Array.from({ length: 11 }, (_, i) => +(low + ((high - low) * i) / 10).toFixed(2));
}

function starButtons(item, title) {
  const box = document.createElement("span");
  box.className = "stars";
  for (const value of state.steps) {
    const button = text("button", String(value));
    button.type = "button";
    button.dataset.item = String(item);
    button.dataset.value = String(value);
    button.title = `rate ${value}`;
    if (state.ratings.get(String(item)) === value) button.classList.add("on");
    button.addEventListener("click", () => rate(item, title, value));
    box.appendChild(button);
  }
  return box;
}

function similarButton(item) {
  const button = text("button", "similar", "small similar-button");
  button.type = "button";
  button.addEventListener("click", () => showSimilar(item));
  return button;
}

function itemRow(item, title, extra, withStars) {
  const li = document.createElement("li");
  li.dataset.item = String(item);
  li.appendChild(text("div", label(item, title), "title"));
  if (extra) li.appendChild(text("div", extra, "meta"));
  if (withStars) li.appendChild(starButtons(item, title));
  li.appendChild(document.createTextNode(" "));
  li.appendChild(similarButton(item));
  return li;
}

let searchTimer = null;
async function search() {
  const q = $("search").value.trim();
  try {
    const data = await api(`/items?q=${encodeURIComponent(q)}&limit=15`);
    const list = $("results");
    list.replaceChildren();
    if (!data.items.length) list.appendChild(text("li", "No item matches.", "hint"));
    for (const row of data.items) {
      state.titles.set(String(row.item), row.title);
      const extra = [row.genres ? row.genres.replaceAll("|", ", ") : null,
        `${row.n_ratings} ratings`].filter(Boolean).join(" · ");
      list.appendChild(itemRow(row.item, row.title, extra, true));
    }
  } catch (err) {
    notice(`Search failed: ${err.message}`, true);
  }
}

function rate(item, title, value) {
  const key = String(item);
  if (state.ratings.get(key) === value) state.ratings.delete(key);
  else state.ratings.set(key, value);
  state.titles.set(key, title);
  for (const b of document.querySelectorAll(`.stars button[data-item="${CSS.escape(key)}"]`)) {
    b.classList.toggle("on", state.ratings.get(key) === Number(b.dataset.value));
  }
  renderRated();
  recommend();
  if (state.ratings.has(key)) showSimilar(item);
}

function renderRated() {
  const list = $("rated");
  list.replaceChildren();
  for (const [item, value] of state.ratings) {
    const li = document.createElement("li");
    li.appendChild(text("span", fmt(value), "score"));
    li.appendChild(text("div", label(item, state.titles.get(item)), "title"));
    const remove = text("button", "remove", "small");
    remove.type = "button";
    remove.addEventListener("click", () => rate(item, state.titles.get(item), value));
    li.appendChild(remove);
    list.appendChild(li);
  }
  $("clear").hidden = state.ratings.size === 0;
  $("ratings-hint").textContent = state.ratings.size
    ? `${state.ratings.size} rating(s). Click a value again or "remove" to take it back.`
    : "Rate a handful of items; recommendations update as you go.";
}

let recommendSeq = 0;
async function recommend() {
  const list = $("recs");
  const status = $("recs-status");
  if (!state.model.new_users) return;
  if (state.ratings.size === 0) {
    list.replaceChildren();
    status.textContent = "Rate an item to get recommendations.";
    return;
  }
  const seq = ++recommendSeq;
  const ratings = Object.fromEntries(state.ratings);
  status.textContent = "Updating...";
  try {
    const data = await api("/recommend", { ratings, k: 10 });
    if (seq !== recommendSeq) return;  // a newer request is on its way
    list.replaceChildren();
    for (const row of data.items) {
      state.titles.set(String(row.item), row.title);
      const li = itemRow(row.item, row.title, null, false);
      li.classList.add("rec");
      li.insertBefore(text("span", fmt(row.prediction), "score"), li.firstChild);
      list.appendChild(li);
    }
    status.textContent = `From ${data.n_ratings_used} rating(s); predicted rating on the right.`;
  } catch (err) {
    if (seq === recommendSeq) status.textContent = `Recommendations failed: ${err.message}`;
  }
}

async function showSimilar(item) {
  const status = $("similar-status");
  try {
    const data = await api(`/similar?item=${encodeURIComponent(item)}&k=8`);
    $("similar-title").textContent = `Similar to ${label(data.item, data.title)}`;
    const list = $("similar");
    list.replaceChildren();
    for (const row of data.items) {
      state.titles.set(String(row.item), row.title);
      const li = itemRow(row.item, row.title, null, true);
      li.insertBefore(text("span", fmt(row.similarity), "score"), li.firstChild);
      list.appendChild(li);
    }
    status.textContent = "Cosine similarity of the model's item vectors.";
  } catch (err) {
    status.textContent = `Similar items are not available: ${err.message}`;
  }
}

async function start() {
  try {
    state.model = await api("/model");
  } catch (err) {
    notice(`Cannot reach the model: ${err.message}`, true);
    return;
  }
  const m = state.model;
  const [low, high] = m.rating_range;
  state.steps = ratingSteps(low, high);
  const rmse = m.metrics && m.metrics.test && m.metrics.test.rmse;
  $("model-info").textContent = [
    `${m.model} (${m.orientation}-based)`,
    `${m.n_items.toLocaleString()} items, ${m.n_users.toLocaleString()} users`,
    `ratings ${low} to ${high}`,
    rmse ? `test RMSE ${fmt(rmse)}` : null,
  ].filter(Boolean).join(" · ");
  if (!m.new_users) {
    notice(
      "This model cannot recommend for new users: it is " +
      `${m.orientation}-based, and only user-based models fold in a new user's ratings. ` +
      "Search and similar items still work; train with orientation=user " +
      "(deeprec train --set orientation=user) to get recommendations here.", false);
    $("recs-status").textContent = "Not available for this model (see the note above).";
  }
  if (!m.has_titles) {
    $("search").placeholder = "Search item ids (this model has no titles)";
  }
  $("search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(search, 200);
  });
  $("clear").addEventListener("click", () => {
    state.ratings.clear();
    renderRated();
    recommend();
    search();
  });
  search();
}

start();
