/* What the page says about what the words asked for: "No black bags under €50 — the closest:".
   Pure functions of a search response (inferred, full_matches, relaxed, results), kept apart
   from app.js so that they run without a browser (tests/unit/test_web_understood.py). */
"use strict";

(function (root) {
  function plural(noun) {
    if (/(ss|sh|ch|x)$/.test(noun)) return `${noun}es`;
    return noun.endsWith("s") ? noun : `${noun}s`; // trousers, jeans: plural already
  }

  function priceText(price, fmt) {
    return price.gte != null && price.lte != null ? `${fmt(price.gte)}–${fmt(price.lte)}`
      : price.lte != null ? `under ${fmt(price.lte)}` : `over ${fmt(price.gte)}`;
  }

  // "black bags under €50" (n products; n === 1: "black bag under €50").
  function askedFor(inf, n, fmt) {
    const cats = inf.categories || [];
    const nouns = cats.length ? cats.map((c) => (n === 1 ? c : plural(c)))
      : [n === 1 ? "product" : "products"];
    const words = [];
    if (inf.colors) words.push(inf.colors.join(" or "));
    words.push(nouns.join(" or "));
    if (inf.sizes) words.push(`in size ${inf.sizes.join(" or ")}`);
    if (inf.price) words.push(priceText(inf.price, fmt));
    return words.join(" ");
  }

  function has(attribute, inf, r) {
    if (attribute === "category") return (inf.categories || []).includes(r.category);
    if (attribute === "color") return (inf.colors || []).includes(r.color);
    if (attribute === "size") return (inf.sizes || []).includes(r.size);
    if (attribute === "price") {
      const p = inf.price || {};
      return typeof r.price === "number" && (p.gte == null || r.price >= p.gte)
        && (p.lte == null || r.price <= p.lte);
    }
    return true; // "cheap" orders, it holds no product out
  }

  // The understood attributes that some shown result lacks: their chips must not read as kept.
  function unkept(inf, results) {
    const asked = ["category", "color", "size", "price"].filter((a) => (
      a === "category" ? inf.categories : a === "color" ? inf.colors
        : a === "size" ? inf.sizes : inf.price));
    return new Set(asked.filter((a) => results.some((r) => !has(a, inf, r))));
  }

  // One line above the results, or "" when the results keep everything the words asked for.
  // fullMatches: the response's full_matches, the products with all of it (null: none asked).
  function limitsNote({ inferred, fullMatches, relaxed, detail, shown, fmt }) {
    if (fullMatches != null && shown > 0 && fullMatches < shown) {
      return fullMatches === 0
        ? `No ${askedFor(inferred, 2, fmt)} — the closest:`
        : `Only ${fullMatches} ${askedFor(inferred, fullMatches, fmt)}; the other results are the closest.`;
    }
    if (!relaxed.length) return "";
    // A re-ordered page (diversity) can show a product that breaks a limit kept by enough others.
    const kept = Object.fromEntries((detail || []).map((d) => [d.attribute, d.kept]));
    return relaxed.map((a) => {
      const what = a === "price" && inferred.price ? priceText(inferred.price, fmt)
        : a === "size" && inferred.sizes ? `in size ${inferred.sizes.join(" or ")}`
          : a === "color" && inferred.colors ? inferred.colors.join(" or ")
            : (inferred.categories || []).join(" or ");
      const n = kept[a];
      return `Not every result is ${what}${n == null ? "" : ` (${n === 0 ? "none is" : `${n} ${n === 1 ? "product is" : "products are"}`})`}.`;
    }).join(" ");
  }

  const api = { askedFor, limitsNote, plural, unkept };
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.LookalikeUnderstood = api;
})(typeof window === "object" ? window : globalThis);
