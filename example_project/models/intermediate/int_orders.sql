/* @hubforge
kind        = "incremental"
time_column = "order_date"
unit        = "day"
batch       = 31
grain       = ["order_id"]
audits      = ["not_null(order_id)", "unique(order_id)", "not_null(customer_id)", "relationships(customer_id, stg_customer_versions.customer_id)", "accepted_values(status, ['placed','shipped','cancelled'])", "accepted_values(source_system, ['legacy','new'])"]
tags        = ["orders", "migration"]
description = "Every order exactly once: from the legacy system before the cutover, from the new system from the cutover on"
*/
-- The legacy export runs a few days past the cutover: during the dual-write weeks it
-- mirrored the new system's orders (same order ids, statuses never updated). The
-- cutover date alone decides which system is the truth for a day, so no day is
-- missing and no order is counted twice.
SELECT
    order_id,
    customer_id,
    ordered_at,
    order_date,
    status,
    channel,
    shipping_fee,
    'legacy' AS source_system
FROM stg_legacy_orders
WHERE order_date < DATE '{{ var("cutover_date") }}'
  AND order_date >= {{ start }} AND order_date < {{ end }}
UNION ALL
SELECT
    order_id,
    customer_id,
    ordered_at,
    order_date,
    status,
    channel,
    shipping_fee,
    'new' AS source_system
FROM stg_orders
WHERE order_date >= DATE '{{ var("cutover_date") }}'
  AND order_date >= {{ start }} AND order_date < {{ end }}
