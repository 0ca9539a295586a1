import { test } from "node:test";
import assert from "node:assert/strict";
import { canonicalize } from "../../src/jose/canonical-json.ts";

test("serializes the RFC 8785 §3.2.2 primitives example exactly", () => {
  const input = JSON.parse(
    '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],' +
      ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",' +
      ' "literals": [null, true, false]}',
  );
  assert.equal(
    canonicalize(input),
    '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],' +
      '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
  );
});

test("sorts the RFC 8785 §3.2.3 example properties by UTF-16 code units", () => {
  const input = {
    "\u20ac": "Euro Sign",
    "\r": "Carriage Return",
    "\ufb33": "Hebrew Letter Dalet With Dagesh",
    "1": "One",
    "\ud83d\ude00": "Emoji: Grinning Face",
    "\u0080": "Control",
    "\u00f6": "Latin Small Letter O With Diaeresis",
  };
  assert.equal(
    canonicalize(input),
    '{"\\r":"Carriage Return","1":"One","\u0080":"Control",' +
      '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",' +
      '"\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
  );
});

test("orders a surrogate pair before U+FB33 because code units, not code points, are compared", () => {
  // U+1F600 > U+FB33 as code points, but its first code unit 0xD83D < 0xFB33.
  assert.equal(canonicalize({ "\ufb33": 1, "\u{1f600}": 2, "5": 3 }), '{"5":3,"\u{1f600}":2,"\ufb33":1}');
});

test("formats every RFC 8785 Appendix B number sample as specified", () => {
  const samples: Array<[string, string]> = [
    ["0000000000000000", "0"],
    ["8000000000000000", "0"],
    ["0000000000000001", "5e-324"],
    ["8000000000000001", "-5e-324"],
    ["7fefffffffffffff", "1.7976931348623157e+308"],
    ["ffefffffffffffff", "-1.7976931348623157e+308"],
    ["4340000000000000", "9007199254740992"],
    ["c340000000000000", "-9007199254740992"],
    ["4430000000000000", "295147905179352830000"],
    ["44b52d02c7e14af5", "9.999999999999997e+22"],
    ["44b52d02c7e14af6", "1e+23"],
    ["44b52d02c7e14af7", "1.0000000000000001e+23"],
    ["444b1ae4d6e2ef4e", "999999999999999700000"],
    ["444b1ae4d6e2ef4f", "999999999999999900000"],
    ["444b1ae4d6e2ef50", "1e+21"],
    ["3eb0c6f7a0b5ed8c", "9.999999999999997e-7"],
    ["3eb0c6f7a0b5ed8d", "0.000001"],
    ["41b3de4355555553", "333333333.3333332"],
    ["41b3de4355555554", "333333333.33333325"],
    ["41b3de4355555555", "333333333.3333333"],
    ["41b3de4355555556", "333333333.3333334"],
    ["41b3de4355555557", "333333333.33333343"],
    ["becbf647612f3696", "-0.0000033333333333333333"],
    ["43143ff3c1cb0959", "1424953923781206.2"],
  ];
  for (const [bits, expected] of samples) {
    const n = Buffer.from(bits, "hex").readDoubleBE(0);
    assert.equal(canonicalize(n), expected, `IEEE 754 ${bits}`);
  }
});

test("switches to exponent notation at 1e21 and 1e-7 like ECMAScript", () => {
  assert.equal(canonicalize([1e21, 1e20, 0.000001, 0.0000001, -0, 1.5e-10, 100]), "[1e+21,100000000000000000000,0.000001,1e-7,0,1.5e-10,100]");
});

test("rejects NaN and both infinities with a TypeError", () => {
  for (const n of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
    assert.throws(() => canonicalize(n), TypeError);
    assert.throws(() => canonicalize({ a: [n] }), TypeError);
  }
});

test("emits no whitespace and sorts keys at every nesting level while keeping array order", () => {
  const input = { b: [3, { z: 1, a: [true, null] }, "x"], a: { d: {}, c: [] } };
  assert.equal(canonicalize(input), '{"a":{"c":[],"d":{}},"b":[3,{"a":[true,null],"z":1},"x"]}');
});

test("agrees with JSON.stringify on strings, including control characters and non-ASCII text", () => {
  const strings = ["", "plain", "tab\there", "\u0000\u001f\u007f", "\b\f\n\r\t", 'q"b\\s/', "héllo wörld", "日本語", "\u{1f600}\u2028\u2029"];
  for (const s of strings) assert.equal(canonicalize(s), JSON.stringify(s));
  assert.equal(canonicalize("\u0000\u001f"), '"\\u0000\\u001f"');
});

test("rejects strings and keys containing unpaired surrogates", () => {
  assert.throws(() => canonicalize("\ud800"), TypeError);
  assert.throws(() => canonicalize("a\udc00b"), TypeError);
  assert.throws(() => canonicalize({ "\ud83d": 1 }), TypeError);
});

test("omits object members whose value is undefined", () => {
  assert.equal(canonicalize({ a: undefined, b: 1, c: { d: undefined } }), '{"b":1,"c":{}}');
});

test("rejects undefined at top level and as an array element", () => {
  assert.throws(() => canonicalize(undefined), TypeError);
  assert.throws(() => canonicalize([1, undefined]), TypeError);
  assert.throws(() => canonicalize(new Array(2)), TypeError);
});

test("rejects functions, bigints, symbols and non-plain objects", () => {
  const rejected: unknown[] = [
    () => 1,
    10n,
    Symbol("s"),
    { f: () => 1 },
    [1n],
    new Date(0),
    new Map(),
    new (class Point {
      x = 1;
    })(),
    Object("boxed"),
  ];
  for (const value of rejected) assert.throws(() => canonicalize(value), TypeError);
});

test("accepts null-prototype objects and ignores symbol keys", () => {
  const obj: Record<string | symbol, unknown> = Object.create(null);
  obj["b"] = 2;
  obj["a"] = 1;
  obj[Symbol("hidden")] = 3;
  assert.equal(canonicalize(obj), '{"a":1,"b":2}');
});

test("rejects cyclic structures but allows shared substructures", () => {
  const cyclic: Record<string, unknown> = {};
  cyclic["self"] = cyclic;
  assert.throws(() => canonicalize(cyclic), TypeError);
  const shared = { x: 1 };
  assert.equal(canonicalize([shared, { s: shared }]), '[{"x":1},{"s":{"x":1}}]');
});

test("produces the same text regardless of key insertion order", () => {
  assert.equal(canonicalize({ a: 1, b: { c: 2, d: 3 } }), canonicalize({ b: { d: 3, c: 2 }, a: 1 }));
});

test("orders member names that look like array indexes by code units, at every depth", () => {
  // An object lists such names first, in numeric order: "9" before "10". RFC 8785 compares strings.
  const value = { a: [{ "10": 1, "9": 2, b: 3 }], "2": { "0": true, "01": false } };
  assert.equal(canonicalize(value), '{"2":{"0":true,"01":false},"a":[{"10":1,"9":2,"b":3}]}');
});

test("keeps a member named __proto__ as a member", () => {
  assert.equal(canonicalize(JSON.parse('{"z":1,"__proto__":{"b":1,"a":2}}')), '{"__proto__":{"a":2,"b":1},"z":1}');
});

test("agrees with a member-by-member reference serializer on generated values", () => {
  // The reference: RFC 8785 written out directly (JSON.stringify for each string and number).
  const reference = (v: unknown): string => {
    if (v === null || typeof v !== "object") return JSON.stringify(v);
    if (Array.isArray(v)) return `[${v.map(reference).join(",")}]`;
    const record = v as Record<string, unknown>;
    return `{${Object.keys(record).sort().map((k) => `${JSON.stringify(k)}:${reference(record[k])}`).join(",")}}`;
  };
  let seed = 7;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const names = ["a", "b", "10", "9", "0", "01", "é", "\u20ac", "\ud83d\ude00", "\u0080", "__proto__", "z z", "\n"];
  const strings = ["", "x", "quote\"back\\slash", "\u0000\u001f\u007f", "\u2028\u2029", "😀", "eyJ"];
  const numbers = [0, -0, 1, -1.5, 1e21, 1e-7, 333333333.33333329, Number.MAX_SAFE_INTEGER, 5e-324];
  const generate = (depth: number): unknown => {
    const r = random();
    if (depth > 3 || r < 0.3) return [null, true, false][Math.floor(random() * 3)];
    if (r < 0.45) return strings[Math.floor(random() * strings.length)];
    if (r < 0.6) return numbers[Math.floor(random() * numbers.length)];
    if (r < 0.75) return Array.from({ length: Math.floor(random() * 4) }, () => generate(depth + 1));
    const object: Record<string, unknown> = {};
    for (let i = Math.floor(random() * 5); i > 0; i--) {
      Object.defineProperty(object, names[Math.floor(random() * names.length)]!, { value: generate(depth + 1), enumerable: true, writable: true, configurable: true });
    }
    return object;
  };
  for (let i = 0; i < 2000; i++) {
    const value = generate(0);
    assert.equal(canonicalize(value), reference(value));
  }
});

test("sorts objects of any number of members, built in any order, as the code-unit order says", () => {
  const names = ["b", "a", "\u20ac", "\ud83d\ude00", "é", "Z", "z z", "aa", "a0", "_", "-", "~"];
  for (const size of [2, 15, 16, 17, 40]) {
    const all = Array.from({ length: size }, (_, i) => `${names[i % names.length]}${Math.floor(i / names.length) || ""}`);
    for (const order of [all, [...all].reverse(), [...all].sort(), [...all].sort().reverse()]) {
      const object = Object.fromEntries(order.map((name, i) => [name, i]));
      const expected = `{${[...all].sort().map((name) => `${JSON.stringify(name)}:${object[name]}`).join(",")}}`;
      assert.equal(canonicalize(object), expected);
      assert.equal(canonicalize({ nested: [object] }), `{"nested":[${expected}]}`);
    }
  }
});

test("refuses a member name with an unpaired surrogate each time, after well-formed names were accepted", () => {
  for (let i = 0; i < 3; i++) {
    assert.equal(canonicalize({ ok: 1 }), '{"ok":1}');
    assert.throws(() => canonicalize({ ["bad\ud800"]: 1 }), TypeError);
  }
});

test("ignores a toJSON put on Object.prototype or Array.prototype (prototype pollution)", () => {
  const value = { b: [1, { c: "x" }], a: true };
  for (const prototype of [Object.prototype, Array.prototype]) {
    Object.defineProperty(prototype, "toJSON", { value: () => "polluted", configurable: true, writable: true });
    try {
      assert.equal(canonicalize(value), '{"a":true,"b":[1,{"c":"x"}]}');
    } finally {
      delete (prototype as { toJSON?: unknown }).toJSON;
    }
  }
});
