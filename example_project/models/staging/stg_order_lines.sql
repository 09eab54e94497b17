/* @hubforge
kind        = "view"
grain       = ["order_id", "line_no"]
audits      = ["not_null(product_id)", "unique(order_id, line_no)"]
tags        = ["staging", "orders"]
description = "Order lines of the new order system, typed"
*/
SELECT
    CAST(order_id AS BIGINT)      AS order_id,
    CAST(line_no AS INTEGER)      AS line_no,
    CAST(product_id AS INTEGER)   AS product_id,
    CAST(quantity AS INTEGER)     AS quantity,
    {{ to_amount("discount_amount") }} AS discount_amount,
    CAST(created_at AS TIMESTAMP) AS created_at,
    CAST(created_at AS DATE)      AS order_date
FROM raw_order_lines
