/** The alert outbox (migration 0021_approval_requests, src/signals/alerts.ts). Times are epoch ms. */
export interface SignalTables {
  alerts: {
    id: string;
    type: string;
    subject: string | null;
    /** JSON object. */
    data: string;
    created_at: number;
  };
}
