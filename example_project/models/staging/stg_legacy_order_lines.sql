/* @hubforge
kind        = "view"
grain       = ["order_id", "line_no"]
audits      = ["not_null(product_id)", "unique(order_id, line_no)"]
tags        = ["staging", "orders", "migration"]
description = "Order lines of the legacy order system: SKUs mapped to product ids, cents to amounts, re-exported duplicates removed"
*/
WITH deduplicated AS (
    -- the export job re-sent some rows: identical duplicates
    SELECT DISTINCT ORDER_NO, LINE_NO, CREATED_TS, SKU, QTY, DISC_CENTS
    FROM legacy_orders
)
SELECT
    CAST(d.ORDER_NO AS BIGINT)      AS order_id,
    CAST(d.LINE_NO AS INTEGER)      AS line_no,
    c.product_id,
    CAST(d.QTY AS INTEGER)          AS quantity,
    {{ cents_to_amount("d.DISC_CENTS") }} AS discount_amount,
    CAST(d.CREATED_TS AS TIMESTAMP) AS created_at,
    CAST(d.CREATED_TS AS DATE)      AS order_date
FROM deduplicated AS d
LEFT JOIN product_catalog AS c ON c.sku = d.SKU
