/* @hubforge
kind        = "view"
grain       = ["order_id"]
audits      = ["not_null(order_id)", "unique(order_id)", "accepted_values(status, ['placed','shipped','cancelled'])"]
tags        = ["staging", "orders", "migration"]
description = "Order headers of the legacy order system, reshaped like the new system's orders"
*/
-- The legacy export has one row per order line and repeats the order's header on
-- each; DISTINCT keeps one row per order (unique(order_id) catches a header that
-- differs between lines).
SELECT DISTINCT
    CAST(ORDER_NO AS BIGINT)            AS order_id,
    CAST(substr(CUST_NO, 2) AS BIGINT)  AS customer_id,   -- 'C000123' -> 123
    CAST(CREATED_TS AS TIMESTAMP)       AS ordered_at,
    CAST(CREATED_TS AS DATE)            AS order_date,
    {{ legacy_status("STATUS_CD") }}    AS status,
    CASE CHANNEL_CD WHEN 'W' THEN 'web' WHEN 'A' THEN 'app' END AS channel,
    {{ cents_to_amount("SHIP_FEE_CENTS") }} AS shipping_fee
FROM legacy_orders
