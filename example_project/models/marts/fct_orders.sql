/* @hubforge
kind        = "table"
grain       = ["order_id"]
audits      = ["unique(order_id)", "not_null(payment_status)", "accepted_values(payment_status, ['paid','partially_paid','unpaid','partially_refunded','overpaid','cancelled','refund_due'])"]
tags        = ["finance", "payments"]
description = "Every order with its amounts and its payment state, reconciled against the payments provider"
*/
-- Payments arrive long after the order (invoices, instalments, returns), so this is a
-- full table rather than incremental by order date. A wrong price list shows up here
-- as 'overpaid' or 'partially_paid' orders.
SELECT
    o.order_id,
    o.order_date,
    o.customer_id,
    o.country_code,
    o.status,
    o.source_system,
    o.order_net_amount,
    o.order_gross_amount,
    o.gross_revenue,
    coalesce(p.captured_amount, 0)  AS captured_amount,
    coalesce(p.refunded_amount, 0)  AS refunded_amount,
    coalesce(p.net_paid_amount, 0)  AS net_paid_amount,
    o.gross_revenue - coalesce(p.net_paid_amount, 0) AS balance_due,
    CASE
        WHEN o.is_cancelled AND coalesce(p.net_paid_amount, 0) = 0 THEN 'cancelled'
        WHEN o.is_cancelled THEN 'refund_due'
        WHEN coalesce(p.refunded_amount, 0) > 0 THEN 'partially_refunded'
        WHEN coalesce(p.net_paid_amount, 0) = 0 THEN 'unpaid'
        WHEN p.net_paid_amount < o.order_gross_amount THEN 'partially_paid'
        WHEN p.net_paid_amount = o.order_gross_amount THEN 'paid'
        ELSE 'overpaid'
    END AS payment_status
FROM int_order_revenue AS o
LEFT JOIN int_order_payments AS p
  ON p.order_id = o.order_id
