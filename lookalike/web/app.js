/* lookalike search page: plain JS, no build step. Talks to the HTTP API v1 on the same origin. */
"use strict";

(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  const el = {
    form: $("#search-form"),
    file: $("#image-file"),
    dropzone: $("#dropzone"),
    dropEmpty: $("#dropzone-empty"),
    preview: $("#dropzone-preview"),
    previewImg: $("#preview-img"),
    previewFallback: $("#preview-fallback"),
    previewName: $("#preview-name"),
    clearImage: $("#clear-image"),
    text: $("#text-query"),
    url: $("#image-url"),
    weight: $("#image-weight"),
    weightField: $("#weight-field"),
    weightOutput: $("#weight-output"),
    searchButton: $("#search-button"),
    resetButton: $("#reset-button"),
    clearFilters: $("#clear-filters"),
    facetsStatus: $("#facets-status"),
    minPrice: $("#min-price"),
    maxPrice: $("#max-price"),
    topK: $("#top-k"),
    status: $("#status"),
    error: $("#error"),
    errorTitle: $("#error-title"),
    errorMessage: $("#error-message"),
    dismissError: $("#dismiss-error"),
    empty: $("#empty"),
    results: $("#results"),
    welcome: $("#welcome"),
    resultsHeading: $("#results-heading"),
    dialog: $("#product-dialog"),
    dialogTitle: $("#product-title"),
    dialogBody: $("#product-body"),
    closeDialog: $("#close-dialog"),
    similarList: $("#similar-list"),
    similarStatus: $("#similar-status"),
    cardTemplate: $("#card-template"),
    understood: $("#understood"),
    inferredChips: $("#inferred-chips"),
    relaxedNote: $("#relaxed-note"),
    notLikeNote: $("#not-like-note"),
    notLikeCount: $("#not-like-count"),
    clearNotLike: $("#clear-not-like"),
    cropFrame: $("#crop-frame"),
    cropBox: $("#crop-box"),
    clearCrop: $("#clear-crop"),
  };
  const NOT_LIKE_KEY = "lookalike.notLike";

  const FACETS = ["category", "color", "size"];
  const SIZE_ORDER = ["XXS", "XS", "S", "M", "L", "XL", "XXL", "XXXL"];
  const currency = document.documentElement.dataset.currency || "EUR";
  const priceFormat = new Intl.NumberFormat(undefined, { style: "currency", currency });

  const state = {
    file: null, // the picked/dropped/pasted File
    previewUrl: null, // object URL for the preview
    searchSeq: 0, // guards against out-of-order responses
    controller: null,
    hasSearched: false,
    opener: null, // element to refocus when the dialog closes
    productSeq: 0,
    dropped: new Set(), // inferred attributes the shopper removed (chips), for this text
    droppedFor: "", // the text they were removed for
    notLike: loadNotLike(), // "not like this": kept for the shopper's next searches
    crop: null, // {x, y, w, h} in fractions of the photo, drawn on the preview
  };

  function loadNotLike() {
    try {
      const v = JSON.parse(localStorage.getItem(NOT_LIKE_KEY) || "[]");
      return Array.isArray(v) ? v.filter((x) => typeof x === "string").slice(-50) : [];
    } catch (_) {
      return [];
    }
  }

  function saveNotLike() {
    try { localStorage.setItem(NOT_LIKE_KEY, JSON.stringify(state.notLike)); } catch (_) { /* private mode */ }
    el.notLikeNote.hidden = state.notLike.length === 0;
    el.notLikeCount.textContent = `${state.notLike.length} hidden as "not like this".`;
  }

  // -- helpers --------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, options = {}) {
    let resp;
    try {
      resp = await fetch(path, { headers: { Accept: "application/json" }, ...options });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(0, "network", "Could not reach the search service. Check your connection and try again.");
    }
    let body = null;
    try {
      body = await resp.json();
    } catch (_) {
      /* not JSON */
    }
    if (!resp.ok) {
      const e = body && body.error;
      throw new ApiError(resp.status, (e && e.code) || "http_" + resp.status,
        (e && e.message) || `The server answered ${resp.status} ${resp.statusText}`.trim());
    }
    return body;
  }

  function formatPrice(value) {
    return typeof value === "number" && isFinite(value) ? priceFormat.format(value) : "";
  }

  function cap(s) {
    return s ? s.charAt(0).toUpperCase() + s.slice(1) : "";
  }

  // Softer shop-style shades for common colour names; any other CSS colour name is used as is.
  const PALETTE = {
    black: "#1f1f1f", white: "#ffffff", grey: "#8a8d93", gray: "#8a8d93", silver: "#c0c4ca",
    red: "#cf2f3b", blue: "#2f5bd3", navy: "#1f2d5c", green: "#2e8b4f", olive: "#6b7a2a",
    yellow: "#e5b81c", gold: "#c9a227", pink: "#e367a8", purple: "#7b3fa0", orange: "#ec7a1c",
    brown: "#7b4a24", beige: "#dccaa8", cream: "#f3ead6", khaki: "#b8a878", teal: "#1f8a8a",
  };

  function swatchColor(name) {
    const v = String(name || "").toLowerCase().replace(/\s+/g, "");
    if (PALETTE[v]) return PALETTE[v];
    return v && window.CSS && CSS.supports("color", v) ? v : "";
  }

  function sortSizes(values) {
    const rank = (v) => {
      const i = SIZE_ORDER.indexOf(v.toUpperCase());
      if (i >= 0) return [0, i, v];
      const n = parseFloat(v);
      if (!isNaN(n)) return [1, n, v];
      return [2, 0, v];
    };
    return values.slice().sort((a, b) => {
      const ra = rank(a), rb = rank(b);
      return ra[0] - rb[0] || ra[1] - rb[1] || ra[2].localeCompare(rb[2]);
    });
  }

  function announce(msg) {
    el.status.textContent = msg;
  }

  // -- query image: file, drop, paste, URL ------------------------------------------------------

  // -- crop box: drag on the preview; the API embeds only the crop ----------------------------

  function shownImageBox() {
    // The preview letterboxes the photo (object-fit: contain): where does it really sit?
    const img = el.previewImg;
    const w = img.clientWidth, h = img.clientHeight;
    const nw = img.naturalWidth || w, nh = img.naturalHeight || h;
    const scale = Math.min(w / nw, h / nh);
    const dw = nw * scale, dh = nh * scale;
    return { left: (w - dw) / 2, top: (h - dh) / 2, width: dw, height: dh };
  }

  function setCrop(crop) {
    state.crop = crop;
    // visibility, not hidden: the button keeps its place, so the photo does not move mid-drag.
    el.clearCrop.style.visibility = crop ? "visible" : "hidden";
    el.cropBox.hidden = !crop;
    if (!crop) return;
    const box = shownImageBox();
    Object.assign(el.cropBox.style, {
      left: `${box.left + crop.x * box.width}px`, top: `${box.top + crop.y * box.height}px`,
      width: `${crop.w * box.width}px`, height: `${crop.h * box.height}px`,
    });
  }

  function pointerFraction(e) {
    const rect = el.previewImg.getBoundingClientRect();
    const box = shownImageBox();
    const clamp = (v) => Math.min(1, Math.max(0, v));
    return { x: clamp((e.clientX - rect.left - box.left) / box.width),
             y: clamp((e.clientY - rect.top - box.top) / box.height) };
  }

  let cropStart = null;
  el.cropFrame.addEventListener("pointerdown", (e) => {
    if (!state.file) return;
    e.preventDefault();
    cropStart = pointerFraction(e);
    el.cropFrame.setPointerCapture(e.pointerId);
  });
  el.cropFrame.addEventListener("pointermove", (e) => {
    if (!cropStart) return;
    const p = pointerFraction(e);
    setCrop({ x: Math.min(cropStart.x, p.x), y: Math.min(cropStart.y, p.y),
              w: Math.abs(p.x - cropStart.x), h: Math.abs(p.y - cropStart.y) });
  });
  el.cropFrame.addEventListener("pointerup", () => {
    cropStart = null;
    // A click, not a drag: no crop.
    if (state.crop && (state.crop.w < 0.02 || state.crop.h < 0.02)) setCrop(null);
    if (state.crop) announce("The search will use the cropped part of the photo.");
  });
  el.clearCrop.addEventListener("click", () => setCrop(null));

  function setFile(file) {
    if (!file) return;
    state.file = file;
    setCrop(null);
    el.url.value = "";
    el.dropzone.classList.remove("invalid");
    if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
    state.previewUrl = URL.createObjectURL(file);
    showPreview(state.previewUrl, file.name || "Pasted image");
    updateWeightState();
  }

  function showPreview(src, name) {
    el.previewFallback.hidden = true;
    el.previewImg.hidden = false;
    el.previewImg.alt = `Query photo: ${name}`;
    el.previewImg.src = src;
    el.previewName.textContent = name;
    el.preview.hidden = false;
    el.dropEmpty.hidden = true;
    el.dropzone.classList.add("has-image");
  }

  function clearImage({ keepUrl = false } = {}) {
    state.file = null;
    setCrop(null);
    el.file.value = "";
    if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
    state.previewUrl = null;
    if (!keepUrl) el.url.value = "";
    el.previewImg.removeAttribute("src");
    el.preview.hidden = true;
    el.dropEmpty.hidden = false;
    el.dropzone.classList.remove("has-image");
    updateWeightState();
  }

  el.previewImg.addEventListener("error", () => {
    if (!el.previewImg.getAttribute("src")) return;
    el.previewImg.hidden = true;
    el.previewFallback.hidden = false;
  });

  el.file.addEventListener("change", () => {
    if (el.file.files && el.file.files[0]) setFile(el.file.files[0]);
  });

  el.clearImage.addEventListener("click", () => {
    clearImage();
    el.file.focus();
  });

  let urlTimer = 0;
  el.url.addEventListener("input", () => {
    clearTimeout(urlTimer);
    const value = el.url.value.trim();
    if (value && state.file) {
      state.file = null;
      el.file.value = "";
    }
    urlTimer = setTimeout(() => {
      if (value && /^https?:\/\//i.test(value)) showPreview(value, value.replace(/^https?:\/\//i, ""));
      else if (!state.file) clearImage({ keepUrl: true });
    }, 300);
    updateWeightState();
  });

  ["dragenter", "dragover"].forEach((type) =>
    el.dropzone.addEventListener(type, (e) => {
      e.preventDefault();
      el.dropzone.classList.add("dragging");
    }));
  ["dragleave", "dragend"].forEach((type) =>
    el.dropzone.addEventListener(type, (e) => {
      if (!el.dropzone.contains(e.relatedTarget)) el.dropzone.classList.remove("dragging");
    }));
  el.dropzone.addEventListener("drop", (e) => {
    e.preventDefault();
    el.dropzone.classList.remove("dragging");
    const dt = e.dataTransfer;
    if (dt.files && dt.files.length) {
      setFile(dt.files[0]);
      runSearch();
      return;
    }
    const uri = (dt.getData("text/uri-list") || dt.getData("text/plain") || "").split("\n")[0].trim();
    if (/^https?:\/\//i.test(uri)) {
      clearImage();
      el.url.value = uri;
      showPreview(uri, uri.replace(/^https?:\/\//i, ""));
      updateWeightState();
      runSearch();
    }
  });
  // A file dropped beside the drop zone must not navigate away from the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());

  document.addEventListener("paste", (e) => {
    const items = Array.from((e.clipboardData && e.clipboardData.items) || []);
    const item = items.find((i) => i.kind === "file" && i.type.startsWith("image/"));
    if (!item) return;
    e.preventDefault();
    setFile(item.getAsFile());
    announce("Pasted image added to the search.");
  });

  // -- image weight ----------------------------------------------------------------------------

  function hasImage() {
    return Boolean(state.file || el.url.value.trim());
  }

  function updateWeightOutput() {
    const p = Number(el.weight.value);
    el.weightOutput.textContent = `Photo ${p}% · Text ${100 - p}%`;
    el.weight.setAttribute("aria-valuetext", `Photo ${p} percent, text ${100 - p} percent`);
  }

  function updateWeightState() {
    const both = hasImage() && el.text.value.trim() !== "";
    el.weightField.classList.toggle("inactive", !both);
  }

  el.weight.addEventListener("input", updateWeightOutput);
  el.weight.addEventListener("change", () => state.hasSearched && hasImage() && el.text.value.trim() && runSearch());
  el.text.addEventListener("input", updateWeightState);

  // -- facets ----------------------------------------------------------------------------------

  async function loadFacets() {
    el.facetsStatus.textContent = "Loading filters…";
    el.facetsStatus.classList.remove("error");
    try {
      const facets = await api("/v1/facets");
      renderFacets(facets);
      el.facetsStatus.textContent = "";
    } catch (err) {
      el.facetsStatus.innerHTML = "";
      el.facetsStatus.classList.add("error");
      const msg = document.createElement("span");
      msg.textContent = `Filters unavailable: ${err.message}`;
      const retry = document.createElement("button");
      retry.type = "button";
      retry.className = "link-button";
      retry.textContent = "Retry";
      retry.addEventListener("click", loadFacets);
      el.facetsStatus.append(msg, " ", retry);
    }
  }

  function renderFacets(facets) {
    const selected = selectedFacetValues();
    for (const name of FACETS) {
      const counts = (facets && facets[name]) || {};
      let values = Object.keys(counts);
      if (name === "size") values = sortSizes(values);
      else values.sort((a, b) => a.localeCompare(b));
      const box = $(`.facet-options[data-facet="${name}"]`);
      box.textContent = "";
      values.forEach((value, i) => {
        const id = `f-${name}-${i}`;
        const input = document.createElement("input");
        input.type = "checkbox";
        input.id = id;
        input.name = name;
        input.value = value;
        input.checked = (selected[name] || []).includes(value);
        const label = document.createElement("label");
        label.htmlFor = id;
        if (name === "color") {
          const sw = document.createElement("span");
          sw.className = "swatch";
          sw.setAttribute("aria-hidden", "true");
          const c = swatchColor(value);
          if (c) sw.style.setProperty("--swatch", c);
          else sw.classList.add("unknown");
          label.append(sw);
        }
        const text = document.createElement("span");
        text.className = "opt-label";
        text.textContent = name === "size" ? value : cap(value);
        const count = document.createElement("span");
        count.className = "count";
        const n = counts[value];
        count.append(String(n));
        const unit = document.createElement("span");
        unit.className = "visually-hidden";
        unit.textContent = n === 1 ? " product" : " products";
        count.append(unit);
        label.append(text, count);
        const wrap = document.createElement("div");
        wrap.className = "opt";
        wrap.append(input, label);
        box.append(wrap);
      });
      $(`#facet-${name}`).hidden = values.length === 0;
    }
    const price = (facets && facets.price) || {};
    if (typeof price.min === "number") el.minPrice.placeholder = String(Math.floor(price.min));
    if (typeof price.max === "number") el.maxPrice.placeholder = String(Math.ceil(price.max));
  }

  function selectedFacetValues() {
    const out = {};
    for (const name of FACETS) {
      out[name] = $$(`.facet-options[data-facet="${name}"] input:checked`).map((i) => i.value);
    }
    return out;
  }

  const filtersAside = $(".filters");
  const filtersToggle = $("#filters-toggle");
  const filterCount = $("#filter-count");

  filtersToggle.addEventListener("click", () => {
    const open = !filtersAside.classList.contains("open");
    filtersAside.classList.toggle("open", open);
    filtersToggle.setAttribute("aria-expanded", String(open));
    filtersToggle.textContent = open ? "Hide filters" : "Show filters";
  });

  function updateFilterCount() {
    const n = Object.values(selectedFacetValues()).reduce((a, v) => a + v.length, 0) +
      (el.minPrice.value.trim() || el.maxPrice.value.trim() ? 1 : 0);
    filterCount.hidden = n === 0;
    filterCount.innerHTML = `${n}<span class="visually-hidden"> active</span>`;
  }

  let filterTimer = 0;
  function filtersChanged() {
    updateFilterCount();
    clearTimeout(filterTimer);
    if (!state.hasSearched || !hasQuery()) return;
    filterTimer = setTimeout(runSearch, 250);
  }

  $(".filters").addEventListener("change", (e) => {
    if (e.target.matches("input[type=checkbox], select, input[type=number]")) filtersChanged();
  });

  el.clearFilters.addEventListener("click", () => {
    $$(".facet-options input:checked").forEach((i) => (i.checked = false));
    el.minPrice.value = "";
    el.maxPrice.value = "";
    filtersChanged();
  });

  // -- search ----------------------------------------------------------------------------------

  function hasQuery() {
    return hasImage() || el.text.value.trim() !== "";
  }

  function readPrice(input, label) {
    const raw = input.value.trim();
    if (raw === "") return null;
    const n = Number(raw);
    if (!isFinite(n) || n < 0) throw new ApiError(0, "invalid_price", `${label} price must be a number of 0 or more.`);
    return n;
  }

  function cropBox() {
    const c = state.crop;
    return [c.x, c.y, Math.min(c.w, 1 - c.x), Math.min(c.h, 1 - c.y)].map((v) => v.toFixed(4));
  }

  function readDataUrl(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(new ApiError(0, "", "The photo could not be read."));
      reader.readAsDataURL(file);
    });
  }

  async function buildRequest() {
    const text = el.text.value.trim();
    const url = el.url.value.trim();
    const f = selectedFacetValues();
    const minPrice = readPrice(el.minPrice, "Minimum");
    const maxPrice = readPrice(el.maxPrice, "Maximum");
    if (minPrice !== null && maxPrice !== null && minPrice > maxPrice) {
      throw new ApiError(0, "invalid_price", "The minimum price must not exceed the maximum price.");
    }
    const topK = Number(el.topK.value) || 12;
    const weight = Number(el.weight.value) / 100;
    if (state.droppedFor !== text) {
      state.dropped = new Set();
      state.droppedFor = text;
    }
    const dropped = Array.from(state.dropped);
    // A form's commas separate values, so a chosen value holding one ("tops, shirts") goes
    // in a JSON list, which the API takes as given; the photo then travels as base64.
    const commas = FACETS.some((name) => f[name].some((v) => v.includes(",")));

    if (state.file && !commas) {
      const form = new FormData();
      form.append("image", state.file, state.file.name || "image");
      if (text) form.append("text", text);
      form.append("top_k", String(topK));
      form.append("image_weight", String(weight));
      for (const name of FACETS) f[name].forEach((v) => form.append(name, v));
      if (minPrice !== null) form.append("min_price", String(minPrice));
      if (maxPrice !== null) form.append("max_price", String(maxPrice));
      state.notLike.forEach((id) => form.append("not_like", id));
      if (state.crop) form.append("crop", cropBox().join(","));
      dropped.forEach((a) => form.append("drop_inferred", a));
      return { kind: text ? "photo and description" : "photo", body: form, headers: {} };
    }
    const filters = {};
    for (const name of FACETS) if (f[name].length) filters[name] = f[name];
    if (minPrice !== null || maxPrice !== null) {
      filters.price = {};
      if (minPrice !== null) filters.price.gte = minPrice;
      if (maxPrice !== null) filters.price.lte = maxPrice;
    }
    const body = { top_k: topK, filters, not_like: state.notLike, drop_inferred: dropped };
    if (text) body.text = text;
    if (state.file) {
      body.image_base64 = await readDataUrl(state.file);
      body.image_weight = weight;
      if (state.crop) body.crop = Object.fromEntries(cropBox().map((v, i) => ["xywh"[i], Number(v)]));
      return { kind: text ? "photo and description" : "photo", body: JSON.stringify(body),
               headers: { "Content-Type": "application/json" } };
    }
    if (url) {
      body.image_url = url;
      body.image_weight = weight;
    }
    return {
      kind: url ? (text ? "image URL and description" : "image URL") : "description",
      body: JSON.stringify(body),
      headers: { "Content-Type": "application/json" },
    };
  }

  function setLoading(on) {
    el.searchButton.disabled = on;
    el.searchButton.classList.toggle("loading", on);
    el.searchButton.querySelector(".button-label").textContent = on ? "Searching…" : "Search";
    el.results.setAttribute("aria-busy", String(on));
    document.body.classList.toggle("is-loading", on);
  }

  function showSkeletons(n) {
    el.results.textContent = "";
    for (let i = 0; i < Math.min(n, 12); i++) {
      const li = document.createElement("li");
      li.className = "card skeleton";
      li.setAttribute("aria-hidden", "true");
      li.innerHTML = '<div class="card-media"></div><div class="card-body"><span class="bar"></span><span class="bar short"></span></div>';
      el.results.append(li);
    }
  }

  const ERROR_TITLES = {
    invalid_image: "That file is not an image we can read",
    unsupported_image_format: "Use a JPEG, PNG, WebP, GIF or BMP image",
    too_large: "That image is too large",
    too_many_pixels: "That image has too many pixels",
    bad_aspect_ratio: "That image is too long and thin",
    image_url_timeout: "That image URL took too long",
    image_url_unusable: "That image URL could not be used",
    invalid_base64: "That image could not be read",
    network: "Connection problem",
    store_unavailable: "Search is temporarily unavailable",
    embedder_unavailable: "Search is temporarily unavailable",
    overloaded: "Search is busy right now: try again in a moment",
    invalid_parameter: "Check the search settings",
  };

  function showError(err, title) {
    el.errorTitle.textContent = title || ERROR_TITLES[err.code] || "Search failed";
    const imageCodes = ["invalid_image", "unsupported_image_format", "too_large", "too_many_pixels",
                        "bad_aspect_ratio"];
    el.dropzone.classList.toggle("invalid", imageCodes.includes(err.code));
    el.errorMessage.textContent = err.message + (err.code && err.status ? ` (${err.code})` : "");
    el.error.dataset.code = err.code || "";
    el.error.hidden = false;
  }

  function hideError() {
    el.error.hidden = true;
    el.dropzone.classList.remove("invalid");
    el.errorMessage.textContent = "";
  }

  el.dismissError.addEventListener("click", () => {
    hideError();
    el.text.focus();
  });

  async function runSearch() {
    clearTimeout(filterTimer);
    hideError();
    if (!hasQuery()) {
      showError(new ApiError(0, "", "Add a photo, an image URL or a description to search."), "Nothing to search for");
      el.text.focus();
      return;
    }
    let req;
    try {
      req = await buildRequest();
    } catch (err) {
      showError(err, "Check the filters");
      return;
    }
    const seq = ++state.searchSeq;
    if (state.controller) state.controller.abort();
    state.controller = new AbortController();
    state.hasSearched = true;
    el.welcome.hidden = true;
    el.empty.hidden = true;
    setLoading(true);
    showSkeletons(Number(el.topK.value) || 12);
    announce(`Searching by ${req.kind}…`);
    try {
      const data = await api("/v1/search", {
        method: "POST", body: req.body, headers: { Accept: "application/json", ...req.headers },
        signal: state.controller.signal,
      });
      if (seq !== state.searchSeq) return;
      renderUnderstood(data, data.results || []);
      renderResults(data.results || [], data.took_ms, req.kind);
      writeUrl();
    } catch (err) {
      if (err.name === "AbortError" || seq !== state.searchSeq) return;
      el.results.textContent = "";
      showError(err);
      announce("The search failed. See the message above the results.");
    } finally {
      if (seq === state.searchSeq) setLoading(false);
    }
  }

  function renderResults(results, tookMs, kind) {
    el.results.textContent = "";
    if (!results.length) {
      el.empty.hidden = false;
      el.empty.innerHTML = "";
      const h = document.createElement("h3");
      h.textContent = "No matching products";
      const p = document.createElement("p");
      const filtered = Object.values(selectedFacetValues()).some((v) => v.length) ||
        el.minPrice.value || el.maxPrice.value;
      p.textContent = filtered
        ? "Nothing in the catalogue matches these filters. Try removing some of them."
        : "Try a different photo or description.";
      el.empty.append(h, p);
      if (filtered) {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "button secondary";
        b.textContent = "Clear filters";
        b.addEventListener("click", () => el.clearFilters.click());
        el.empty.append(b);
      }
      announce("No matching products.");
      return;
    }
    el.empty.hidden = true;
    const frag = document.createDocumentFragment();
    results.forEach((r, i) => frag.append(makeCard(r, { lazy: i >= 12 })));
    el.results.append(frag);
    const took = typeof tookMs === "number" ? ` in ${Math.round(tookMs)} ms` : "";
    announce(`${results.length} ${results.length === 1 ? "product" : "products"} found by ${kind}${took}.`);
  }

  // -- what the search understood (chips), why each result, "not like this", the URL ---------

  const ATTR_LABEL = { category: "Category", color: "Colour", size: "Size", price: "Price", cheap: "Price" };

  function inferredChips(inf) {
    const chips = [];
    if (inf.categories) chips.push(["category", inf.categories.map(cap).join(", ")]);
    if (inf.colors) chips.push(["color", inf.colors.map(cap).join(", ")]);
    if (inf.sizes) chips.push(["size", inf.sizes.join(", ")]);
    if (inf.price) {
      const p = inf.price;
      const text = p.gte != null && p.lte != null ? `${formatPrice(p.gte)}–${formatPrice(p.lte)}`
        : p.lte != null ? `under ${formatPrice(p.lte)}` : `over ${formatPrice(p.gte)}`;
      chips.push(["price", text]);
    }
    if (inf.cheap) chips.push(["cheap", "low price first"]);
    return chips;
  }

  function renderUnderstood(data, results) {
    const inf = data.inferred || {};
    const relaxed = data.relaxed || [];
    const U = window.LookalikeUnderstood;
    el.inferredChips.textContent = "";
    const chips = inferredChips(inf);
    // A chip some result lacks is what was asked for, not what is shown: marked so.
    const lacking = U.unkept(inf, results);
    for (const [attr, text] of chips) {
      const li = document.createElement("li");
      li.className = lacking.has(attr) ? "inferred-chip unkept" : "inferred-chip";
      li.dataset.attribute = attr;
      const label = document.createElement("span");
      label.textContent = `${ATTR_LABEL[attr]}: ${text}`;
      if (lacking.has(attr)) label.title = "Asked for; not every result has it";
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "×";
      remove.setAttribute("aria-label", `Remove ${ATTR_LABEL[attr].toLowerCase()} ${text}`);
      remove.addEventListener("click", () => {
        state.dropped.add(attr);
        runSearch();
      });
      li.append(label, remove);
      el.inferredChips.append(li);
    }
    // full_matches: the products with everything the words asked for; fewer than shown and the
    // page says so ("No black bags under €50 — the closest:") rather than let the chips promise it.
    const note = U.limitsNote({ inferred: inf, fullMatches: data.full_matches, relaxed,
      detail: data.relaxed_detail, shown: results.length, fmt: formatPrice });
    el.relaxedNote.hidden = note === "";
    el.relaxedNote.textContent = note;
    el.understood.hidden = chips.length === 0 && note === "";
  }

  function whyLines(r) {
    const e = r.explain || {};
    const lines = [];
    const v = e.vector || {};
    if (v.image != null) lines.push(`Photo similarity ${v.image.toFixed(3)} (photo ${Number(e.matched_image || 0) + 1})`);
    if (v.text != null) lines.push(`Description similarity ${v.text.toFixed(3)}`);
    if (e.fusion === "rrf") lines.push(`Description and keyword match ${Number(e.base_score).toFixed(3)} (ranks fused)`);
    for (const b of e.boosts || []) {
      lines.push(`+${b.weight.toFixed(2)} ${ATTR_LABEL[b.attribute].toLowerCase()} ${b.value}${b.why ? ` — ${b.why}` : ""}`);
    }
    if (e.strategy) lines.push(`Recommended (${e.strategy.replace("_", " ")})`);
    return lines;
  }

  function markNotLike(productId, card) {
    if (!state.notLike.includes(productId)) state.notLike.push(productId);
    state.notLike = state.notLike.slice(-50);
    saveNotLike();
    card.remove();
    announce("Hidden from your searches.");
  }

  el.clearNotLike.addEventListener("click", () => {
    state.notLike = [];
    saveNotLike();
    if (state.hasSearched) runSearch();
  });

  // The search in the URL (text, filters, number of results) so it can be shared and reloaded;
  // a photo cannot travel in a URL.
  function writeUrl() {
    const params = new URLSearchParams();
    const text = el.text.value.trim();
    if (text) params.set("q", text);
    const url = el.url.value.trim();
    if (url) params.set("image_url", url);
    const f = selectedFacetValues();
    for (const name of FACETS) f[name].forEach((v) => params.append(name, v));
    if (el.minPrice.value.trim()) params.set("min_price", el.minPrice.value.trim());
    if (el.maxPrice.value.trim()) params.set("max_price", el.maxPrice.value.trim());
    if (el.topK.value && el.topK.value !== "12") params.set("top_k", el.topK.value);
    state.dropped.forEach((a) => params.append("drop_inferred", a));
    const qs = params.toString();
    history.replaceState(null, "", qs ? `?${qs}` : location.pathname);
  }

  function readUrl() {
    const params = new URLSearchParams(location.search);
    if (!params.has("q") && !params.has("image_url")) return false;
    el.text.value = params.get("q") || "";
    el.url.value = params.get("image_url") || "";
    for (const name of FACETS) {
      const wanted = new Set(params.getAll(name));
      $$(`.facet-options[data-facet="${name}"] input`).forEach((i) => { i.checked = wanted.has(i.value); });
    }
    el.minPrice.value = params.get("min_price") || "";
    el.maxPrice.value = params.get("max_price") || "";
    if (params.get("top_k") && $(`#top-k option[value="${params.get("top_k")}"]`)) el.topK.value = params.get("top_k");
    state.dropped = new Set(params.getAll("drop_inferred"));
    state.droppedFor = el.text.value.trim();
    updateWeightState();
    return true;
  }

  function makeCard(r, { compact = false, lazy = true } = {}) {
    const li = el.cardTemplate.content.firstElementChild.cloneNode(true);
    li.dataset.productId = r.product_id;
    li.dataset.color = r.color || "";
    li.dataset.category = r.category || "";
    li.dataset.score = String(r.score);
    if (compact) li.classList.add("compact");
    const img = $("img", li);
    if (!lazy) img.loading = "eager";
    img.src = r.image_url;
    img.alt = r.title || r.product_id;
    const button = $(".card-link", li);
    // The card shows one product of its variant group; the shopper may switch (showVariant).
    button.addEventListener("click", () => openProduct(li.dataset.productId, button));
    const sw = $(".swatch", li);
    const show = (m) => {
      li.dataset.productId = m.product_id;
      li.dataset.color = m.color || "";
      img.src = m.image_url;
      img.alt = m.title || m.product_id;
      button.textContent = m.title || m.product_id;
      const c = swatchColor(m.color);
      sw.classList.toggle("unknown", !c);
      if (c) sw.style.setProperty("--swatch", c);
      $(".card-color", li).textContent = cap(m.color) || "—";
      $(".card-price", li).textContent = formatPrice(m.price);
    };
    show(r);
    $(".card-category", li).textContent = r.category ? cap(r.category) : "";
    if (!compact) addVariants(li, r, show);
    $(".score-value", li).textContent = typeof r.score === "number" ? r.score.toFixed(3) : "";
    const actions = $(".card-actions", li);
    if (compact) {
      actions.remove();
    } else {
      const list = $(".why-list", li);
      for (const line of whyLines(r)) {
        const item = document.createElement("li");
        item.textContent = line;
        list.append(item);
      }
      // Not named after the product: the title button keeps the product's name to itself.
      $(".not-like", li).addEventListener("click", () => markNotLike(li.dataset.productId, li));
      // Clicks inside the actions are theirs, not the card's (which opens the product).
      actions.addEventListener("click", (e) => e.stopPropagation());
    }
    // The whole card is clickable; the title button stays the one focusable target.
    li.addEventListener("click", (e) => {
      if (e.target !== button) button.click();
    });
    return li;
  }

  // "Also in N variants": one swatch per product of the hit's variant group (the same article
  // in another colour or size); choosing one shows that product in the card.
  function addVariants(li, r, show) {
    const others = r.other_variants || [];
    if (!others.length) return;
    const box = $(".card-variants", li);
    $(".variants-label", box).textContent =
      `also in ${others.length} ${others.length === 1 ? "variant" : "variants"}`;
    const row = $(".variant-swatches", box);
    const members = [r, ...others];
    members.forEach((m, i) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "variant-swatch";
      const c = swatchColor(m.color);
      if (c) b.style.setProperty("--swatch", c);
      else b.classList.add("unknown");
      const name = [cap(m.color), m.size].filter(Boolean).join(", ") || m.product_id;
      b.title = name;
      b.setAttribute("aria-label", `Show ${name}`);
      b.setAttribute("aria-pressed", String(i === 0));
      b.dataset.productId = m.product_id;
      b.addEventListener("click", (e) => {
        e.stopPropagation();  // a swatch switches the card; it does not open the product
        for (const other of row.children) other.setAttribute("aria-pressed", String(other === b));
        show(m);
      });
      row.append(b);
    });
    box.hidden = false;
  }

  el.form.addEventListener("submit", (e) => {
    e.preventDefault();
    runSearch();
  });

  el.resetButton.addEventListener("click", () => {
    if (state.controller) state.controller.abort();
    state.searchSeq++;
    setLoading(false);
    clearImage();
    el.text.value = "";
    el.weight.value = "50";
    updateWeightOutput();
    el.clearFilters.click();
    state.hasSearched = false;
    hideError();
    el.results.textContent = "";
    el.empty.hidden = true;
    el.welcome.hidden = false;
    announce("Search by photo, image URL or description.");
    el.text.focus();
  });

  // -- product dialog --------------------------------------------------------------------------

  async function openProduct(productId, opener) {
    if (!el.dialog.open) {
      state.opener = opener || document.activeElement;
      el.dialog.showModal();
    }
    const seq = ++state.productSeq;
    el.dialog.dataset.productId = productId;
    el.dialogTitle.textContent = "Loading product…";
    el.dialogBody.innerHTML = '<div class="dialog-loading"><span class="spinner dark" aria-hidden="true"></span> Loading…</div>';
    el.similarList.textContent = "";
    el.similarStatus.textContent = "Finding similar products…";
    el.dialogTitle.focus();
    el.dialog.querySelector(".dialog-inner").scrollTop = 0;

    const productP = api(`/v1/products/${encodeURIComponent(productId)}`);
    const similarP = api(`/v1/products/${encodeURIComponent(productId)}/similar?top_k=8`);
    try {
      const product = await productP;
      if (seq !== state.productSeq) return;
      renderProduct(product);
    } catch (err) {
      if (seq !== state.productSeq) return;
      el.dialogTitle.textContent = "Product unavailable";
      el.dialogBody.innerHTML = "";
      const p = document.createElement("p");
      p.className = "alert inline";
      p.setAttribute("role", "alert");
      p.textContent = err.message;
      el.dialogBody.append(p);
    }
    try {
      const similar = await similarP;
      if (seq !== state.productSeq) return;
      const items = similar.results || [];
      el.similarList.textContent = "";
      items.forEach((r) => el.similarList.append(makeCard(r, { compact: true })));
      el.similarStatus.textContent = items.length ? "" : "No similar products found.";
    } catch (err) {
      if (seq !== state.productSeq) return;
      el.similarStatus.textContent = `Could not load similar products: ${err.message}`;
    }
  }

  function renderProduct(p) {
    el.dialogTitle.textContent = p.title || p.product_id;
    el.dialogBody.textContent = "";
    const urls = p.image_urls || [];

    const gallery = document.createElement("div");
    gallery.className = "gallery";
    const main = document.createElement("img");
    main.className = "gallery-main";
    main.width = 448;
    main.height = 448;
    const alt = (n) => `${p.title || p.product_id}, photo ${n + 1} of ${urls.length}`;
    if (urls.length) {
      main.src = urls[0];
      main.alt = alt(0);
    }
    gallery.append(main);
    if (urls.length > 1) {
      const thumbs = document.createElement("div");
      thumbs.className = "thumbs";
      thumbs.setAttribute("role", "group");
      thumbs.setAttribute("aria-label", "Product photos");
      urls.forEach((u, n) => {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "thumb";
        b.setAttribute("aria-pressed", String(n === 0));
        b.setAttribute("aria-label", `Show photo ${n + 1} of ${urls.length}`);
        const ti = document.createElement("img");
        ti.src = u;
        ti.alt = "";
        ti.className = "product-image";
        b.append(ti);
        b.addEventListener("click", () => {
          main.src = u;
          main.alt = alt(n);
          $$(".thumb", thumbs).forEach((t) => t.setAttribute("aria-pressed", String(t === b)));
        });
        thumbs.append(b);
      });
      gallery.append(thumbs);
    }
    main.classList.add("product-image");

    const info = document.createElement("div");
    info.className = "product-info";
    const price = document.createElement("p");
    price.className = "product-price";
    price.textContent = formatPrice(p.price);
    const desc = document.createElement("p");
    desc.className = "product-desc";
    desc.textContent = p.description || "";
    const dl = document.createElement("dl");
    dl.className = "facts";
    const facts = [["Category", cap(p.category)], ["Colour", cap(p.color)], ["Size", p.size]];
    const attrs = p.attributes || {};
    if (attrs.brand) facts.push(["Brand", String(attrs.brand)]);
    facts.push(["Photos", String(urls.length)], ["Product ID", p.product_id]);
    facts.forEach(([k, v]) => {
      if (!v) return;
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      if (k === "Colour") {
        const sw = document.createElement("span");
        sw.className = "swatch";
        sw.setAttribute("aria-hidden", "true");
        const c = swatchColor(p.color);
        if (c) sw.style.setProperty("--swatch", c);
        dd.append(sw);
      }
      dd.append(v);
      dl.append(dt, dd);
    });
    const actions = document.createElement("div");
    actions.className = "product-actions";
    if (urls.length) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "button secondary";
      b.textContent = "Search with this photo";
      b.addEventListener("click", () => searchWithPhoto(urls[0], p));
      actions.append(b);
    }
    info.append(price, desc, dl, actions);
    el.dialogBody.append(gallery, info);
  }

  async function searchWithPhoto(url, product) {
    try {
      const resp = await fetch(url);
      if (!resp.ok) throw new Error(`photo unavailable (${resp.status})`);
      const blob = await resp.blob();
      const ext = (blob.type.split("/")[1] || "jpg").replace("jpeg", "jpg");
      setFile(new File([blob], `${product.product_id}.${ext}`, { type: blob.type }));
      state.opener = el.text;
      el.dialog.close();
      runSearch();
    } catch (err) {
      el.similarStatus.textContent = `Could not use this photo: ${err.message}`;
    }
  }

  el.closeDialog.addEventListener("click", () => el.dialog.close());
  el.dialog.addEventListener("click", (e) => {
    if (e.target === el.dialog) el.dialog.close(); // a click on the backdrop
  });
  el.dialog.addEventListener("close", () => {
    state.productSeq++;
    const target = state.opener;
    state.opener = null;
    if (target && document.contains(target)) target.focus();
  });

  // -- start -----------------------------------------------------------------------------------

  updateWeightOutput();
  updateWeightState();
  saveNotLike();
  loadFacets().then(() => { if (readUrl()) runSearch(); });
})();
