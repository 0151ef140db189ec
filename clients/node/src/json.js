// A strict JSON reader for records (protocol.md 4.4 step 3 and 4.1's integers). JSON.parse accepts
// what the protocol calls corrupt (a lone surrogate escape) and forgets what it must see (that `1.0`
// was written with a fraction), so records are scanned here. Numbers written with a fraction or an
// exponent come out as `Float` objects, which no integer check accepts; objects have no prototype,
// so a member named `__proto__` is just a member. Duplicate names: the last one wins, whole.

/** A number written with a fraction or an exponent: never an integer, whatever its value. */
export class Float {
  /** @param {number} value */
  constructor(value) {
    this.value = value;
  }
}

/** Thrown for text that is not one JSON text. */
export class JsonError extends Error {}

const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
const ESCAPES = /** @type {Record<string, string>} */ ({ '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" });

/**
 * @param {string} text
 * @returns {unknown}
 */
export function parseStrict(text) {
  let i = 0;
  const fail = (/** @type {string} */ what) => {
    throw new JsonError(`${what} at offset ${i}`);
  };
  const ws = () => {
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else break;
    }
  };
  const hex4 = () => {
    const h = text.slice(i, i + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) fail("bad \\u escape");
    i += 4;
    return parseInt(h, 16);
  };
  const string = () => {
    i++; // the opening quote
    let out = "";
    for (;;) {
      if (i >= text.length) fail("unterminated string");
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return out;
      }
      if (c < 0x20) fail("control character in a string");
      if (c >= 0xd800 && c <= 0xdfff) {
        // A raw surrogate: fine only as a well-formed pair (text decoded from UTF-8 has no others).
        const d = text.charCodeAt(i + 1);
        if (c > 0xdbff || !(d >= 0xdc00 && d <= 0xdfff)) fail("lone surrogate in a string");
        out += text.slice(i, i + 2);
        i += 2;
        continue;
      }
      if (c !== 0x5c) {
        out += text[i++];
        continue;
      }
      const e = text[i + 1];
      i += 2;
      if (e in ESCAPES) {
        out += ESCAPES[e];
        continue;
      }
      if (e !== "u") fail("bad escape");
      const u = hex4();
      if (u >= 0xdc00 && u <= 0xdfff) fail("lone low surrogate escape");
      if (u >= 0xd800 && u <= 0xdbff) {
        if (text.slice(i, i + 2) !== "\\u") fail("lone high surrogate escape");
        i += 2;
        const low = hex4();
        if (low < 0xdc00 || low > 0xdfff) fail("lone high surrogate escape");
        out += String.fromCharCode(u, low);
      } else out += String.fromCharCode(u);
    }
  };
  // protocol.md 4.4 step 3: the record is depth 1; arrays and objects may nest 64 deep in all.
  let depth = 0;
  /** @returns {unknown} */
  const value = () => {
    ws();
    const c = text[i];
    if (c === "{") {
      if (++depth > 64) fail("arrays and objects nested deeper than 64");
      i++;
      /** @type {Record<string, unknown>} */
      const obj = Object.create(null);
      ws();
      if (text[i] === "}") {
        i++;
        depth--;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a member name");
        const k = string();
        ws();
        if (text[i++] !== ":") fail("expected ':'");
        obj[k] = value();
        ws();
        const sep = text[i++];
        if (sep === "}") {
          depth--;
          return obj;
        }
        if (sep !== ",") fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      if (++depth > 64) fail("arrays and objects nested deeper than 64");
      i++;
      /** @type {unknown[]} */
      const arr = [];
      ws();
      if (text[i] === "]") {
        i++;
        depth--;
        return arr;
      }
      for (;;) {
        arr.push(value());
        ws();
        const sep = text[i++];
        if (sep === "]") {
          depth--;
          return arr;
        }
        if (sep !== ",") fail("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    for (const [word, v] of /** @type {const} */ ([["true", true], ["false", false], ["null", null]])) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m || m[0] === "-") return fail("expected a value");
    i += m[0].length;
    const n = Number(m[0]);
    // protocol.md 4.4 step 3 and 4.1: beyond a double is corrupt anywhere; -0 is never an integer.
    if (!Number.isFinite(n)) return fail("a number beyond the range of a double");
    return m[1] !== undefined || m[2] !== undefined || m[0] === "-0" ? new Float(n) : n;
  };
  const v = value();
  ws();
  if (i !== text.length) fail("text after the value");
  return v;
}
