/* @hubforge
kind         = "incremental"
time_column  = "payment_date"
unit         = "day"
batch        = 31
grain        = ["payment_date", "method"]
product      = true
destinations = ["finance"]
audits       = ["not_null(method)", "unique(payment_date, method)", "accepted_values(method, ['card','paypal','invoice'])"]
tags         = ["finance", "payments"]
description  = "Cash in and out per day and payment method: captures, refunds and the net amount"
*/
SELECT
    payment_date,
    method,
    count(*) FILTER (WHERE kind = 'capture')  AS captures,
    count(*) FILTER (WHERE kind = 'refund')   AS refunds,
    CAST(coalesce(sum(amount) FILTER (WHERE kind = 'capture'), 0) AS DECIMAL(18,2))  AS captured_amount,
    CAST(coalesce(-sum(amount) FILTER (WHERE kind = 'refund'), 0) AS DECIMAL(18,2))  AS refunded_amount,
    CAST(sum(amount) AS DECIMAL(18,2))        AS net_amount
FROM stg_payments
WHERE payment_date >= {{ start }} AND payment_date < {{ end }}
GROUP BY payment_date, method
