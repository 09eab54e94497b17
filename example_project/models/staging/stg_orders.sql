/* @hubforge
kind        = "view"
grain       = ["order_id"]
audits      = ["not_null(order_id)", "unique(order_id)", "accepted_values(status, ['placed','shipped','cancelled'])"]
tags        = ["staging", "orders"]
description = "Orders of the new order system (live from the cutover), typed"
*/
SELECT
    CAST(order_id AS BIGINT)      AS order_id,
    CAST(customer_id AS BIGINT)   AS customer_id,
    CAST(ordered_at AS TIMESTAMP) AS ordered_at,
    CAST(ordered_at AS DATE)      AS order_date,
    lower(status)                 AS status,
    channel,
    {{ to_amount("shipping_fee") }} AS shipping_fee
FROM raw_orders
