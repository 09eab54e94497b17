/* @hubforge
kind        = "view"
grain       = ["payment_id"]
audits      = ["not_null(order_id)", "unique(payment_id)", "accepted_values(kind, ['capture','refund'])"]
tags        = ["staging", "payments"]
description = "Payments provider events: captures (positive) and refunds (negative amounts)"
*/
SELECT
    CAST(payment_id AS BIGINT)  AS payment_id,
    CAST(order_id AS BIGINT)    AS order_id,
    CAST(paid_at AS TIMESTAMP)  AS paid_at,
    CAST(paid_at AS DATE)       AS payment_date,
    kind,
    method,
    {{ to_amount("amount") }}   AS amount
FROM raw_payments
