/** The alert outbox (migration 0021_approval_requests, src/signals/alerts.ts) and its delivery (0026_alert_delivery). Times are epoch ms. */
export interface SignalTables {
  alerts: {
    id: string;
    type: string;
    subject: string | null;
    /** JSON object. */
    data: string;
    created_at: number;
  };
  alert_webhooks: {
    id: string;
    url: string;
    /** JSON array of alert types. */
    types: string;
    /** 'hmac' | 'jws'. */
    signing: string;
    /** The HMAC secret sealed with the master key (src/keys/sealed-box.ts), bound to `alert_webhooks:<id>`. */
    secret_sealed: string | null;
    /** 0 | 1. */
    allow_private_network: number;
    created_at: number;
    updated_at: number;
  };
  alert_deliveries: {
    alert_id: string;
    webhook_id: string;
    /** 'pending' | 'delivered' | 'failed'. */
    status: string;
    attempts: number;
    next_attempt_at: number;
    lease_until: number | null;
    last_status: number | null;
    last_error: string | null;
    created_at: number;
    updated_at: number;
    delivered_at: number | null;
  };
}
