/* @hubforge
kind        = "incremental"
time_column = "order_date"
unit        = "day"
batch       = 31
grain       = ["order_id", "line_no"]
audits      = ["not_null(product_id)", "unique(order_id, line_no)"]
tags        = ["orders", "migration"]
description = "Every order line exactly once, split between the legacy and the new system at the cutover like int_orders"
*/
SELECT
    order_id,
    line_no,
    order_date,
    product_id,
    quantity,
    discount_amount,
    'legacy' AS source_system
FROM stg_legacy_order_lines
WHERE order_date < DATE '{{ var("cutover_date") }}'
  AND order_date >= {{ start }} AND order_date < {{ end }}
UNION ALL
SELECT
    order_id,
    line_no,
    order_date,
    product_id,
    quantity,
    discount_amount,
    'new' AS source_system
FROM stg_order_lines
WHERE order_date >= DATE '{{ var("cutover_date") }}'
  AND order_date >= {{ start }} AND order_date < {{ end }}
