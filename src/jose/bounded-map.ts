/**
 * Keeping a Map (or a Set) to a bound by deleting its oldest entries: in insertion order, so a
 * caller that deletes and sets a key again on each use forgets the least recently used first.
 *
 * `map.delete(map.keys().next().value)` looks like O(1) and is not. V8 leaves a deleted entry's
 * slot in the map's table until the table is rebuilt, and a new iterator walks every such slot from
 * the start. A map held at its bound that way gathers tens of thousands of them: at 100,000 entries
 * each eviction took 15–110 µs (Node 24), on paths run once per request. One iterator kept for
 * the map's life walks each slot once: ECMAScript's Map iterators go on to entries set after they
 * were made and skip deleted ones, so the next key it gives is always the oldest one left.
 *
 * It lives with the JOSE helpers because src/jose is the dependency-free code that the guard
 * package ships too (test/guard/package.test.ts); the server's bounded maps use it as well.
 */
export class OldestFirst<K> {
  readonly #map: Map<K, unknown> | Set<K>;
  #keys: Iterator<K>;

  /** Evicts from `map` (from a Set, its values). */
  constructor(map: Map<K, unknown> | Set<K>) {
    this.#map = map;
    this.#keys = map.keys();
  }

  /** Deletes the oldest entries until at most `size` are left. */
  trim(size: number): void {
    while (this.#map.size > size) {
      let next = this.#keys.next();
      // A finished iterator stays finished (it had given and seen deleted every key): start again.
      if (next.done) {
        this.#keys = this.#map.keys();
        next = this.#keys.next();
        if (next.done) return;
      }
      this.#map.delete(next.value);
    }
  }
}

/** A Map of at most `max` entries: setting a new key past the bound deletes the oldest ones. */
export class BoundedMap<K, V> extends Map<K, V> {
  readonly #max: number;
  readonly #oldest: OldestFirst<K>;

  constructor(max: number) {
    super();
    this.#max = max;
    this.#oldest = new OldestFirst<K>(this);
  }

  override set(key: K, value: V): this {
    super.set(key, value);
    this.#oldest.trim(this.#max);
    return this;
  }
}
