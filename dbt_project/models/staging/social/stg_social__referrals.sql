with

source as (
    {{ latest_version(source('social', 'social_referrals'), 'referral_id') }}
),

renamed as (
    select
        referral_id,
        {{ clean_text('referrer_contact_id') }} as referrer_contact_id,
        {{ normalise_email('referrer_email') }} as referrer_email,
        {{ normalise_email('referred_email') }} as referred_email,
        {{ to_utc('referred_at') }} as referred_at,
    from source
)

select * from renamed
