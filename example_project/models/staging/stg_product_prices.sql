/* @hubforge
kind        = "view"
grain       = ["product_id", "valid_from"]
audits      = ["not_null(unit_price)", "unique(product_id, valid_from)"]
tags        = ["staging", "pricing"]
description = "Net list price per product and validity period [valid_from, valid_to); open-ended periods end in 9999"
*/
SELECT
    CAST(product_id AS INTEGER)                         AS product_id,
    {{ to_amount("price") }}                            AS unit_price,
    CAST(valid_from AS DATE)                            AS valid_from,
    coalesce(CAST(valid_to AS DATE), DATE '9999-12-31') AS valid_to
FROM product_prices
