/* @hubforge
kind        = "table"
grain       = ["customer_id", "valid_from"]
audits      = ["not_null(country_code)", "unique(customer_id, valid_from)"]
tags        = ["staging", "customers"]
description = "Customer versions from the CRM export with validity periods [valid_from, valid_to): a customer who moved has one version per country"
*/
WITH versions AS (
    SELECT
        CAST(customer_id AS BIGINT)     AS customer_id,
        full_name,
        email,
        country_code,
        CAST(signed_up_at AS TIMESTAMP) AS signed_up_at,
        CAST(updated_at AS TIMESTAMP)   AS valid_from,
        lead(CAST(updated_at AS TIMESTAMP)) OVER (PARTITION BY customer_id ORDER BY updated_at) AS next_valid_from
    FROM raw_customers
)
SELECT
    customer_id,
    full_name,
    email,
    country_code,
    signed_up_at,
    valid_from,
    coalesce(next_valid_from, TIMESTAMP '9999-12-31 00:00:00') AS valid_to,
    next_valid_from IS NULL AS is_current
FROM versions
