with

half_hours as (

    select * from {{ ref('stg_elec2') }}

),

daily as (

    select
        observed_on,
        count(*) as count_half_hours,
        avg(nsw_price) as avg_nsw_price,
        min(nsw_price) as min_nsw_price,
        max(nsw_price) as max_nsw_price,
        avg(nsw_demand) as avg_nsw_demand,
        avg(vic_price) as avg_vic_price,
        avg(transfer) as avg_transfer,
        avg(price_up) as share_price_up

    from half_hours

    group by observed_on

),

final as (

    select
        *,

        avg(avg_nsw_price) over (
            order by observed_on
            rows between 6 preceding and current row
        ) as avg_nsw_price_rolling_7d,

        avg_nsw_price - lag(avg_nsw_price) over (
            order by observed_on
        ) as avg_nsw_price_change_1d

    from daily

)

select * from final
