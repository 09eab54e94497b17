/* @hubforge
kind        = "table"
grain       = ["product_id"]
audits      = ["not_null(sku)", "unique(product_id)", "accepted_values(category, ['coffee','tea','equipment','accessories','snacks'])"]
tags        = ["pricing"]
description = "Product catalog with the current net list price and the number of price changes"
*/
WITH price_history AS (
    SELECT
        product_id,
        count(*) - 1 AS price_changes,
        max(unit_price) FILTER (WHERE valid_to = DATE '9999-12-31') AS current_unit_price
    FROM stg_product_prices
    GROUP BY product_id
)
SELECT
    c.product_id,
    c.sku,
    c.product_name,
    c.category,
    CAST(c.launched_on AS DATE)     AS launched_on,
    CAST(c.discontinued_on AS DATE) AS discontinued_on,
    ph.current_unit_price,
    coalesce(ph.price_changes, 0)   AS price_changes
FROM product_catalog AS c
LEFT JOIN price_history AS ph
  ON ph.product_id = c.product_id
