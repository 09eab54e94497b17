/* @hubforge
kind         = "incremental"
time_column  = "order_date"
unit         = "day"
batch        = 31
grain        = ["order_date", "country_code"]
product      = true
destinations = ["finance"]
audits       = ["not_null(country_code)", "unique(order_date, country_code)", "range(net_revenue, 0, 1000000)"]
validate     = { max_sum_change = { net_revenue = "5%" }, severity = "error" }
tags         = ["finance", "revenue"]
description  = "Daily revenue per country (country of the customer at order time): orders, cancellations, items, net, VAT and gross revenue"
*/
SELECT
    r.order_date,
    r.country_code,
    c.region,
    count(*)                                                  AS orders,
    count(*) FILTER (WHERE r.is_cancelled)                    AS cancelled_orders,
    coalesce(sum(r.item_count) FILTER (WHERE NOT r.is_cancelled), 0) AS items_sold,
    CAST(sum(r.net_revenue) AS DECIMAL(18,2))                 AS net_revenue,
    CAST(sum(r.vat_amount) AS DECIMAL(18,2))                  AS vat_amount,
    CAST(sum(r.gross_revenue) AS DECIMAL(18,2))               AS gross_revenue
FROM int_order_revenue AS r
LEFT JOIN countries AS c
  ON c.country_code = r.country_code
WHERE r.order_date >= {{ start }} AND r.order_date < {{ end }}
GROUP BY r.order_date, r.country_code, c.region
