/* @hubforge
kind         = "incremental"
time_column  = "order_month"
unit         = "month"
batch        = 6
grain        = ["order_month", "category"]
product      = true
destinations = ["partner_bi"]
audits       = ["not_null(category)", "unique(order_month, category)"]
tags         = ["revenue", "pricing"]
description  = "Monthly item revenue per product category (net of discounts, without shipping; cancelled orders excluded)"
*/
SELECT
    CAST(date_trunc('month', order_date) AS DATE) AS order_month,
    category,
    count(DISTINCT order_id)    AS orders,
    count(DISTINCT product_id)  AS products_sold,
    sum(quantity)               AS items_sold,
    CAST(sum(discount_amount) AS DECIMAL(18,2)) AS discount_amount,
    CAST(sum(line_net_amount) AS DECIMAL(18,2)) AS net_item_revenue
FROM int_order_lines_priced
WHERE order_date >= {{ start }} AND order_date < {{ end }}
  AND NOT is_cancelled
GROUP BY date_trunc('month', order_date), category
