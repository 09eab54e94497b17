/* @hubforge
kind         = "incremental"
time_column  = "order_month"
unit         = "month"
batch        = 12
grain        = ["order_month", "country_code"]
product      = true
destinations = ["finance", "partner_bi"]
audits       = ["not_null(country_code)", "unique(order_month, country_code)"]
tags         = ["finance", "revenue"]
description  = "Monthly revenue per country, the sum of revenue_daily (order_month is the first day of the month)"
*/
SELECT
    CAST(date_trunc('month', order_date) AS DATE) AS order_month,
    country_code,
    region,
    sum(orders)            AS orders,
    sum(cancelled_orders)  AS cancelled_orders,
    sum(items_sold)        AS items_sold,
    CAST(sum(net_revenue) AS DECIMAL(18,2))   AS net_revenue,
    CAST(sum(vat_amount) AS DECIMAL(18,2))    AS vat_amount,
    CAST(sum(gross_revenue) AS DECIMAL(18,2)) AS gross_revenue
FROM revenue_daily
WHERE order_date >= {{ start }} AND order_date < {{ end }}
GROUP BY date_trunc('month', order_date), country_code, region
