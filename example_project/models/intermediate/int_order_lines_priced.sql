/* @hubforge
kind        = "incremental"
time_column = "order_date"
unit        = "day"
batch       = 31
grain       = ["order_id", "line_no"]
audits      = ["not_null(unit_price)", "unique(order_id, line_no)", "range(unit_price, 0, 1000)"]
tags        = ["orders", "pricing"]
description = "Order lines priced with the net list price valid on the order date"
*/
-- Neither order system stores prices: the price list (seed product_prices) is the
-- truth. A line costs quantity x the price valid on the order date, minus its
-- discount. Prices change mid-month, so the lookup is by day, not by month.
SELECT
    l.order_id,
    l.line_no,
    l.order_date,
    l.product_id,
    c.category,
    l.quantity,
    p.unit_price,
    l.discount_amount,
    CAST(l.quantity * p.unit_price - l.discount_amount AS DECIMAL(18,2)) AS line_net_amount,
    o.status = 'cancelled' AS is_cancelled
FROM int_order_lines AS l
JOIN int_orders AS o
  ON o.order_id = l.order_id
LEFT JOIN stg_product_prices AS p
  ON p.product_id = l.product_id
 AND l.order_date >= p.valid_from
 AND l.order_date < p.valid_to
LEFT JOIN product_catalog AS c
  ON c.product_id = l.product_id
WHERE l.order_date >= {{ start }} AND l.order_date < {{ end }}
  AND o.order_date >= {{ start }} AND o.order_date < {{ end }}
