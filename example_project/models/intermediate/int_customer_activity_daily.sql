/* @hubforge
kind        = "incremental"
time_column = "activity_date"
unit        = "day"
batch       = 31
grain       = ["activity_date", "customer_id"]
audits      = ["not_null(customer_id)", "unique(activity_date, customer_id)"]
tags        = ["customers"]
description = "Per customer and day: orders and revenue, and whether the customer counts as active that day"
*/
-- The definition of an ACTIVE customer lives here, and only here: a customer is
-- active on a day when they placed at least one order that was not cancelled.
-- customer_activity_7d and dim_customers build on is_active.
SELECT
    order_date                                   AS activity_date,
    customer_id,
    count(*)                                     AS orders_placed,
    count(*) FILTER (WHERE NOT is_cancelled)     AS orders_kept,
    sum(net_revenue)                             AS net_revenue,
    count(*) FILTER (WHERE NOT is_cancelled) > 0 AS is_active
FROM int_order_revenue
WHERE order_date >= {{ start }} AND order_date < {{ end }}
GROUP BY order_date, customer_id
