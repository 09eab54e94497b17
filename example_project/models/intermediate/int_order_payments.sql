/* @hubforge
kind        = "table"
grain       = ["order_id"]
audits      = ["unique(order_id)", "not_null(order_id)"]
tags        = ["payments"]
description = "Per order: what was captured and refunded so far (payments arrive days or weeks after the order, in instalments)"
*/
SELECT
    order_id,
    count(*) FILTER (WHERE kind = 'capture')                       AS capture_count,
    count(*) FILTER (WHERE kind = 'refund')                        AS refund_count,
    coalesce(sum(amount) FILTER (WHERE kind = 'capture'), 0)       AS captured_amount,
    coalesce(-sum(amount) FILTER (WHERE kind = 'refund'), 0)       AS refunded_amount,
    sum(amount)                                                    AS net_paid_amount,
    min(paid_at)                                                   AS first_paid_at,
    max(paid_at)                                                   AS last_paid_at
FROM stg_payments
GROUP BY order_id
