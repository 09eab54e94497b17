/* @hubforge
kind        = "incremental"
time_column = "order_date"
unit        = "day"
batch       = 31
grain       = ["order_id"]
audits      = ["not_null(country_code)", "unique(order_id)", "not_null(order_net_amount)"]
tags        = ["orders", "finance"]
description = "One row per order with its net, VAT and gross amounts and the customer's country at the time of the order"
*/
-- Cancelled orders stay (they count as orders) but earn no revenue.
-- The country is the customer's country when they ordered: customers move.
WITH lines AS (
    SELECT
        order_id,
        count(*)              AS line_count,
        sum(quantity)         AS item_count,
        sum(discount_amount)  AS discount_amount,
        sum(line_net_amount)  AS items_net_amount
    FROM int_order_lines_priced
    WHERE order_date >= {{ start }} AND order_date < {{ end }}
    GROUP BY order_id
),
orders AS (
    SELECT
        o.order_id,
        o.order_date,
        o.ordered_at,
        o.customer_id,
        cv.country_code,
        o.status,
        o.channel,
        o.source_system,
        o.status = 'cancelled' AS is_cancelled,
        l.line_count,
        l.item_count,
        l.discount_amount,
        l.items_net_amount,
        o.shipping_fee,
        CAST(l.items_net_amount + o.shipping_fee AS DECIMAL(18,2)) AS order_net_amount
    FROM int_orders AS o
    JOIN lines AS l
      ON l.order_id = o.order_id
    LEFT JOIN stg_customer_versions AS cv
      ON cv.customer_id = o.customer_id
     AND o.ordered_at >= cv.valid_from
     AND o.ordered_at < cv.valid_to
    WHERE o.order_date >= {{ start }} AND o.order_date < {{ end }}
)
SELECT
    order_id,
    order_date,
    ordered_at,
    customer_id,
    country_code,
    status,
    channel,
    source_system,
    is_cancelled,
    line_count,
    item_count,
    discount_amount,
    items_net_amount,
    shipping_fee,
    order_net_amount,
    {{ with_vat("order_net_amount", var("vat_rate")) }} AS order_gross_amount,
    CASE WHEN is_cancelled THEN CAST(0 AS DECIMAL(18,2)) ELSE order_net_amount END AS net_revenue,
    CASE WHEN is_cancelled THEN CAST(0 AS DECIMAL(18,2))
         ELSE {{ with_vat("order_net_amount", var("vat_rate")) }} - order_net_amount END AS vat_amount,
    CASE WHEN is_cancelled THEN CAST(0 AS DECIMAL(18,2))
         ELSE {{ with_vat("order_net_amount", var("vat_rate")) }} END AS gross_revenue
FROM orders
