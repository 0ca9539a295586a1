// What the CIBA tests ask a second person for: a small four-eyes policy set and an order above its threshold.

/** Everything permitted, but an order above 1 million needs one second person's approval; people with the approver role may give it. */
export const fourEyesPolicy = `
@id("all") permit (principal, action, resource);

@id("four-eyes-large-orders")
@approval("four-eyes")
forbid (principal is User, action == Action::"order:create", resource is Instrument)
when { context has notional && context.notional > 1000000 }
unless { context has approvals && context.approvals >= 1 };

@id("approvers-approve")
permit (principal is User, action == Action::"approve", resource is User)
when { principal has roles && principal.roles.contains("approver") };
`;

/** An fx order of 5 million (apply the `fx` instrument class first). */
export const largeOrder = { type: 'order', instrument: { class: 'fx', symbol: 'EURUSD' }, side: 'buy', max_notional: { amount: '5000000', currency: 'USD' }, venue: 'XLON', account: 'GB-FX-001' };
