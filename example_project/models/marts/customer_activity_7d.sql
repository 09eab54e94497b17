/* @hubforge
kind         = "incremental"
time_column  = "activity_date"
unit         = "day"
batch        = 31
window       = 7
start        = "2024-01-07"
grain        = ["activity_date"]
product      = true
destinations = ["crm"]
audits       = ["not_null(active_customers_7d)", "unique(activity_date)"]
tags         = ["customers", "crm"]
description  = "Per day: active customers, orders and revenue over the 7 days ending with that day (starts on the first full 7-day window)"
*/
-- Each output day reads the 7 input days ending with it, so the batch reads 6 days
-- before its window, but outputs only the days of its window (one row per day, also
-- on a day without orders).
WITH calendar AS (
    SELECT CAST(d AS DATE) AS activity_date
    FROM range({{ start }}, {{ end }}, INTERVAL 1 DAY) AS t(d)
),
activity AS (
    SELECT activity_date, customer_id, orders_kept, net_revenue
    FROM int_customer_activity_daily
    WHERE is_active
      AND activity_date >= {{ start }} - INTERVAL 6 DAY
      AND activity_date < {{ end }}
)
SELECT
    cal.activity_date,
    count(DISTINCT a.customer_id) FILTER (WHERE a.activity_date = cal.activity_date) AS active_customers,
    count(DISTINCT a.customer_id)                          AS active_customers_7d,
    coalesce(sum(a.orders_kept), 0)                        AS orders_7d,
    CAST(coalesce(sum(a.net_revenue), 0) AS DECIMAL(18,2)) AS net_revenue_7d
FROM calendar AS cal
LEFT JOIN activity AS a
  ON a.activity_date > cal.activity_date - INTERVAL 7 DAY
 AND a.activity_date <= cal.activity_date
GROUP BY cal.activity_date
