/**
 * The risk engine's settings (issue 16, docs/risk.md "Settings"): how many points each signal adds,
 * where the levels and outcomes start, and the windows the signals look back over. Every value has
 * a documented default; apply's `risk` section changes them (stored in the database, so every node
 * assesses alike), read through a `RiskSettingsSource`.
 */

/** Every signal the engine knows, by the name recorded in audit events and passed to Cedar. */
export const signalNames = [
  // A person's login from a device (the signed device cookie) never seen for this account.
  'new_device',
  // A source network (IPv4 /24, IPv6 /48) not seen for this person or client within `network_memory_days`.
  'new_network',
  // Failed logins or client authentications of this principal or from this address within `failure_window`.
  'recent_failures',
  // The account was locked out (too many failures) within `failure_window`.
  'recent_lockout',
  // Logins or tokens in the current window well above this principal's baseline (src/risk/anomalies).
  'velocity',
  // Outside the trading hours of the person's desk (in the desk's time zone).
  'off_hours',
  // A client or agent asking for a scope, audience or resource it has never been issued.
  'new_scope',
  'new_audience',
  'new_resource',
  // One token used from two networks at once (introspection, the guard's reports).
  'concurrent_networks',
  // Delegation (token exchange): an actor never seen in this subject's chains, a chain deeper than
  // this subject's usual, many exchanges for one subject in a short time.
  'new_actor',
  'deep_chain',
  'exchange_burst',
  // An anomaly of this principal is open and its reaction is to step up (src/risk/anomalies).
  'open_anomaly',
  // Clearance's own admin API and CLI (intrusion signals): a new address, off hours, many changes
  // in a burst, a policy set activated soon after it was created.
  'admin_new_network',
  'admin_off_hours',
  'admin_burst',
  'quick_activation',
] as const;
export type SignalName = (typeof signalNames)[number];

export interface RiskSettings {
  /** Switched off: every assessment is `quietAssessment` (nothing is looked up or recorded). */
  enabled: boolean;
  /** Points each signal adds when it fires (0 switches a signal off). */
  weights: Record<SignalName, number>;
  /** The score at which each level starts (`low` below `medium`). */
  levels: { medium: number; high: number };
  /** The score at which each outcome starts (`allow` below `step_up`). */
  outcomes: { step_up: number; deny: number };
  /** A network is new when it was not seen for the principal within this many days. */
  networkMemoryDays: number;
  /** How far back failures and lockouts count, in seconds. */
  failureWindowSeconds: number;
  /** Failures within the window before `recent_failures` fires. */
  failureThreshold: number;
  /** `velocity` fires when the current window's count is at least this many times the baseline... */
  velocityFactor: number;
  /** ...and at least this many events (a quiet principal's first burst of a few is not velocity). */
  velocityMinimum: number;
  /** `exchange_burst` fires at this many exchanges for one subject within `exchangeBurstWindowSeconds`. */
  exchangeBurstCount: number;
  exchangeBurstWindowSeconds: number;
  /**
   * `concurrent_networks` fires when the token presented to get this one (a refresh token's family,
   * an exchanged subject token) was presented by its holder from another network within this many
   * seconds (src/risk/signals/concurrent-networks.ts).
   */
  concurrentWindowSeconds: number;
  /** `admin_burst` fires at this many admin API or CLI write actions by one administrator within `adminBurstWindowSeconds`. */
  adminBurstCount: number;
  adminBurstWindowSeconds: number;
  /** `quick_activation` fires when a policy set version is activated less than this many seconds after it was stored. */
  quickActivationSeconds: number;
  /** Trading hours, in each desk's time zone (UTC for a desk without one): minutes after midnight, and ISO weekdays. */
  tradingHours: { start: number; end: number; weekdays: number[] };
}

export const defaultRiskSettings: Readonly<RiskSettings> = Object.freeze({
  enabled: true,
  weights: {
    new_device: 25,
    new_network: 15,
    recent_failures: 20,
    recent_lockout: 30,
    velocity: 30,
    off_hours: 20,
    new_scope: 10,
    new_audience: 15,
    new_resource: 10,
    concurrent_networks: 40,
    new_actor: 20,
    deep_chain: 20,
    exchange_burst: 30,
    open_anomaly: 50,
    admin_new_network: 25,
    admin_off_hours: 20,
    admin_burst: 30,
    quick_activation: 30,
  },
  levels: { medium: 30, high: 60 },
  outcomes: { step_up: 50, deny: 80 },
  networkMemoryDays: 30,
  failureWindowSeconds: 900,
  failureThreshold: 3,
  velocityFactor: 10,
  velocityMinimum: 20,
  exchangeBurstCount: 30,
  exchangeBurstWindowSeconds: 60,
  concurrentWindowSeconds: 300,
  adminBurstCount: 20,
  adminBurstWindowSeconds: 300,
  quickActivationSeconds: 15 * 60,
  tradingHours: { start: 7 * 60, end: 18 * 60, weekdays: [1, 2, 3, 4, 5] },
});

/** Where the engine reads its settings: cached on the hot path, so a read costs no round trip. */
export interface RiskSettingsSource {
  get(): Promise<RiskSettings>;
  /** Reads them again at the next `get` (after an apply through this process). */
  invalidate?(): void;
}

/** The defaults, for a context without stored settings (and for unit tests). */
export const defaultRiskSettingsSource: RiskSettingsSource = { get: async () => defaultRiskSettings };
