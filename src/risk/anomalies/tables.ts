/** The tables of baselines and anomalies (migration 0029_risk_anomalies). Times are epoch ms. */
export interface AnomalyTables {
  risk_activity: {
    window_start: number;
    window_ms: number;
    /** 'User' | 'Client'. */
    principal_type: string;
    principal_id: string;
    node: string;
    tokens: number;
    logins: number;
    /** JSON array of the distinct audiences of the tokens counted. */
    audiences: string;
    updated_at: number;
  };
  risk_windows: {
    window_start: number;
    window_ms: number;
    lease_until: number | null;
    evaluated_at: number | null;
    principals: number | null;
    anomalies: number | null;
  };
  risk_baselines: {
    principal_type: string;
    principal_id: string;
    /** src/risk/anomalies/baselines.ts AnomalyClass. */
    metric: string;
    ewma: number;
    windows: number;
    window_ms: number;
    last_window: number;
    updated_at: number;
  };
  risk_anomalies: {
    id: string;
    principal_type: string;
    principal_id: string;
    class: string;
    window_start: number;
    window_ms: number;
    last_window_start: number;
    windows: number;
    observed: number;
    baseline: number;
    /** 'alert' | 'step_up' | 'suspend'. */
    reaction: string;
    /** 'open' | 'resolved'. */
    status: string;
    created_at: number;
    updated_at: number;
    resolved_by: string | null;
    resolved_at: number | null;
    resolution_note: string | null;
  };
  risk_suspensions: {
    id: string;
    principal_type: string;
    principal_id: string;
    anomaly_id: string;
    suspended_at: number;
    reinstated_at: number | null;
    reinstated_by: string | null;
    note: string | null;
  };
  risk_anomaly_settings: {
    name: string;
    /** JSON. */
    value: string;
    updated_at: number;
  };
}
