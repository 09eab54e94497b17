/* @hubforge
kind         = "table"
grain        = ["customer_id"]
product      = true
destinations = ["crm"]
audits       = ["not_null(customer_id)", "unique(customer_id)", "not_null(country_code)"]
tags         = ["customers", "crm"]
description  = "One row per customer: current profile and country, lifetime orders and revenue, and whether the customer is active (active within the last active_days days of history)"
*/
WITH current_version AS (
    SELECT customer_id, full_name, email, country_code, signed_up_at
    FROM stg_customer_versions
    WHERE is_current
),
moves AS (
    SELECT customer_id, count(DISTINCT country_code) - 1 AS country_changes
    FROM stg_customer_versions
    GROUP BY customer_id
),
activity AS (
    SELECT
        customer_id,
        min(activity_date) FILTER (WHERE is_active) AS first_active_date,
        max(activity_date) FILTER (WHERE is_active) AS last_active_date,
        sum(orders_kept)                            AS lifetime_orders,
        sum(net_revenue)                            AS lifetime_net_revenue
    FROM int_customer_activity_daily
    GROUP BY customer_id
),
history AS (
    SELECT max(activity_date) AS last_day
    FROM int_customer_activity_daily
)
SELECT
    cv.customer_id,
    cv.full_name,
    cv.email,
    cv.country_code,
    co.country_name,
    co.region,
    cv.signed_up_at,
    m.country_changes,
    a.first_active_date,
    a.last_active_date,
    coalesce(a.lifetime_orders, 0) AS lifetime_orders,
    CAST(coalesce(a.lifetime_net_revenue, 0) AS DECIMAL(18,2)) AS lifetime_net_revenue,
    coalesce(a.last_active_date > h.last_day - {{ var("active_days") }}, false) AS is_active
FROM current_version AS cv
JOIN moves AS m
  ON m.customer_id = cv.customer_id
LEFT JOIN activity AS a
  ON a.customer_id = cv.customer_id
LEFT JOIN countries AS co
  ON co.country_code = cv.country_code
CROSS JOIN history AS h
