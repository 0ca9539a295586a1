/** Shared Signals (migration 0037_ssf_streams, docs/signals.md). Times are epoch ms. */
export interface SsfTables {
  ssf_streams: {
    stream_id: string;
    /** The receiver: the client that made the stream, and the `aud` of its SETs. */
    client_id: string;
    /** 'push' | 'poll'. */
    delivery_method: string;
    /** Push: where SETs go. Poll: null (the poll URL is derived from the stream id). */
    endpoint_url: string | null;
    /** Push: the Authorization header value the receiver asked for, sealed with the master key. */
    authorization_header: string | null;
    /** JSON array of event type URIs. */
    events_requested: string;
    description: string | null;
    /** 'enabled' | 'paused' | 'disabled'. */
    status: string;
    status_reason: string | null;
    /** 'ALL' | 'NONE'. */
    default_subjects: string;
    created_at: number;
    updated_at: number;
  };
  ssf_subjects: {
    stream_id: string;
    subject_key: string;
    /** The subject identifier as the receiver sent it (JSON). */
    subject: string;
    /** 1 added, 0 removed. */
    included: number;
    updated_at: number;
  };
  ssf_outbox: {
    jti: string;
    stream_id: string;
    event_type: string;
    set_jwt: string;
    /** 'pending' | 'delivered' | 'acknowledged' | 'failed'. */
    status: string;
    attempts: number;
    next_attempt_at: number;
    lease_until: number | null;
    last_status: number | null;
    last_error: string | null;
    created_at: number;
    settled_at: number | null;
  };
  ssf_cursor: {
    name: string;
    last_seq: number;
  };
}
