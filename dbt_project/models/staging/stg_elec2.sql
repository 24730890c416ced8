with

source as (

    select * from {{ source('raw', 'elec2') }}

),

final as (

    select

        ----------  keys
        ts as observed_at,
        -- the UTC day whatever the reading session's TimeZone
        cast(timezone('UTC', ts) as date) as observed_on,
        "window" as window_month,

        ----------  numerics (min-max scaled to [0, 1])
        period as day_period,
        nswprice as nsw_price,
        nswdemand as nsw_demand,
        vicprice as vic_price,
        vicdemand as vic_demand,
        transfer,

        ----------  label
        price_up,

        ----------  lineage
        source_file,
        source_sha256,
        source_line,
        loaded_at

    from source

)

select * from final
